"""The applications, on top of the engine; nothing in the package imports them.

    cli.py        python -m transformer train, translate, evaluate, average, download, reproduce
    options.py    the train command's options: help texts, ranges, --set, recipes underneath
    dryrun.py     train --dry-run: the plan of a run, before anything is downloaded or trained
    recipes.py    named training runs as data (the paper's, make reproduce's, the notebooks')
    reproduce.py  make reproduce: train, evaluate, write results/runs/<run>.json
    notebook.py   the notebooks' training run: trained once, reused afterwards
    profiles.py   the cpu/gpu profile and the hardware banner
    viz.py        attention plots and an offline altair renderer (the ``plots`` extra)
"""
