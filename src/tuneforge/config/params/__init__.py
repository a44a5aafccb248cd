"""Importing this package registers every parameter declaration, group by group."""

from . import (  # noqa: F401
    apollo,
    badam,
    data,
    eval,
    export,
    freeze,
    galore,
    generate,
    infer,
    lora,
    method,
    model,
    quantization,
    rlhf,
    train,
)
