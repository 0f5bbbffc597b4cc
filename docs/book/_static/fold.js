// Every code cell gets a button that folds its source away; one more at the top folds them all.
document.addEventListener("DOMContentLoaded", () => {
  const inputs = document.querySelectorAll("div.cell > div.cell_input");
  if (!inputs.length) return;
  const fold = (input, folded) => {
    input.classList.toggle("folded", folded);
    input.previousElementSibling.textContent = folded ? "▸ show code" : "▾ fold code";
  };
  for (const input of inputs) {
    const button = document.createElement("button");
    button.className = "fold-code";
    button.addEventListener("click", () => fold(input, !input.classList.contains("folded")));
    input.before(button);
    fold(input, false);
  }
  const all = document.createElement("button");
  all.className = "fold-all";
  all.textContent = "fold all code · 折叠全部代码";
  all.addEventListener("click", () => {
    const folded = [...inputs].some((input) => !input.classList.contains("folded"));
    inputs.forEach((input) => fold(input, folded));
  });
  document.querySelector("article")?.prepend(all);
});
