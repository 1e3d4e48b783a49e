"""Triton kernels behind physok's fast paths (installed as the `physok_kernels` package).

One module per op, each with its Triton kernels, its autograd wrapper and a registration that
lets `torch.compile` trace through it; the references live in `physok.ops` and the dispatch
(`physok.ops.backend`) decides which one runs. The folder is named `kernels/` in the source tree
but installed as `physok_kernels`, so it cannot shadow or be shadowed by Hugging Face's
`kernels` package.
"""
