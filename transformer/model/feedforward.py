"""Position-wise feed-forward network (Section 3.3): FFN(x) = max(0, x W1 + b1) W2 + b2."""

from torch import nn


class FeedForward(nn.Module):
    """Two linear maps with a ReLU between, applied to every position alike."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)

    def forward(self, x):  # (B, T, d_model) -> (B, T, d_model)
        return self.w_2(self.w_1(x).relu_())  # in place: no second (B, T, d_ff) tensor
