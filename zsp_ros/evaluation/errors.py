"""The one error type the evaluators raise for bad input: it names the file and the image."""
from __future__ import annotations

import os
from typing import Any


class EvaluationInputError(ValueError):
    """Bad evaluation input (missing file, size mismatch, unknown id, ...).

    ``str(err)`` reads ``"<file> (image <id>): <problem>"``; ``file`` and ``image`` are kept as
    attributes for callers that want them.
    """

    def __init__(self, problem: str, *, file: str | os.PathLike | None = None, image: Any = None) -> None:
        self.problem = problem
        self.file = None if file is None else str(file)
        self.image = image
        where = self.file or ""
        if image is not None:
            where = f"{where} (image {image})" if where else f"image {image}"
        super().__init__(f"{where}: {problem}" if where else problem)
