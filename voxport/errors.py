"""Typed errors. Every user-facing failure is a VoxportError: one line, exit code 2."""


class VoxportError(Exception):
    """A problem with the user's input or artifacts; printed as one line, exit code 2."""

    exit_code = 2


class CheckpointError(VoxportError):
    """The model to export is missing, corrupt, or not a supported architecture."""


class ExportError(VoxportError):
    """A graph the export wrote does not run (its configuration is one onnxruntime refuses)."""


class ArtifactError(VoxportError):
    """An exported artifact directory is incomplete, damaged, or does not match its manifest."""


class InputError(VoxportError):
    """Text or audio given to the runtime is outside what the model accepts."""


class DtypeError(VoxportError):
    """An unknown precision name, or a variant an artifact set was not exported with."""


class OutputError(VoxportError):
    """A file a command writes cannot be written (disk full, a read-only place); the target is untouched."""
