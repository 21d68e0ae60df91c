"""Makes the TorchScript fixtures of tests/torchscript_test.cpp:

  gaussian_eps.pt  the exact eps-prediction of data ~ N(0, 0.5^2 I) under
                   the VP SDE (beta_min 0.1, beta_max 20):
                   eps(x, t) = sigma_t x / (alpha_t^2 s^2 + sigma_t^2),
                   B = 0.1 t + 9.95 t^2, alpha = exp(-B/2),
                   sigma = sqrt(1 - exp(-B)); scripted with torch.jit.script.
  one_arg.pt       a scripted module whose forward takes x only (refused).
  tuple_out.pt     forward(x, t) returns a tuple (refused when called).

Run: python3 tests/data/make_torchscript.py tests/data
"""
import os
import sys

import torch
from torch import nn


class GaussianEps(nn.Module):
    def __init__(self, s: float = 0.5, beta_min: float = 0.1, beta_max: float = 20.0):
        super().__init__()
        self.s = s
        self.beta_min = beta_min
        self.beta_max = beta_max

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.to(torch.float64)
        big_b = self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t
        alpha2 = torch.exp(-big_b)
        sigma = torch.sqrt(-torch.expm1(-big_b))
        coef = sigma / (alpha2 * self.s * self.s + sigma * sigma)
        shape = [x.shape[0]] + [1] * (x.dim() - 1)
        return (x.to(torch.float64) * coef.reshape(shape)).to(x.dtype)


class OneArg(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class TupleOut(nn.Module):
    def forward(self, x: torch.Tensor, t: torch.Tensor):
        return x, t


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    torch.jit.script(GaussianEps()).save(os.path.join(out, "gaussian_eps.pt"))
    torch.jit.script(OneArg()).save(os.path.join(out, "one_arg.pt"))
    torch.jit.script(TupleOut()).save(os.path.join(out, "tuple_out.pt"))
