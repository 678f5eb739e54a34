"""The error for a TorchSparse name the compatibility layer does not provide."""

GUIDE = "docs/porting_from_torchsparse.md"


def unsupported_getattr(module: str, names: dict[str, str]):
    """A module __getattr__: a known TorchSparse name of `names` ({name: what to use instead})
    raises NotImplementedError naming it and pointing to the guide; anything else is the usual
    AttributeError (so hasattr and import machinery behave as for any module)."""

    def __getattr__(name: str):
        if name in names:
            raise NotImplementedError(
                f"{module}.{name} is not supported by pointengine's TorchSparse compatibility layer: "
                f"{names[name]} (see {GUIDE})"
            )
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
