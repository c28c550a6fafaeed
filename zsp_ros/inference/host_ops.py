"""The one dispatch of the host pixel loops: compiled kernels where numba is present, else their numpy twins.

=====================  ==============================  ==========================================
operation              compiled (postprocess_kernels)  twin (postprocess_numpy), same results
=====================  ==============================  ==========================================
``panoptic_assign``    Mask2Former's pixel assignment + segment numbering
``segment_extents``    input-resolution area and box of each segment from the small map
``first_argmax``       argmax over axis 0, first maximum
=====================  ==============================  ==========================================

The choice is read at each call from ``postprocess_kernels.AVAILABLE`` (False without numba or with
``ZSP_POSTPROCESS=numpy``), so tests can run both paths in one process.
"""
from __future__ import annotations

import numpy as np

from zsp_ros.inference import postprocess_kernels as compiled
from zsp_ros.inference import postprocess_numpy as twins


def path() -> str:
    """"numba" or "numpy": which implementation the calls below run."""
    return "numba" if compiled.AVAILABLE else "numpy"


def panoptic_assign(probs: np.ndarray, scores: np.ndarray, labels: np.ndarray, stuff_of_class: np.ndarray,
                    overlap_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """See `postprocess_kernels.panoptic_assign`; ``probs`` may be overwritten."""
    impl = compiled.panoptic_assign if compiled.AVAILABLE else twins.panoptic_assign
    return impl(probs, scores, labels, stuff_of_class, overlap_threshold)


def segment_extents(id_map: np.ndarray, num_segments: int, row_weight: np.ndarray, col_weight: np.ndarray,
                    first_row: np.ndarray, last_row: np.ndarray, first_col: np.ndarray, last_col: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """See `postprocess_kernels.segment_extents`."""
    impl = compiled.segment_extents if compiled.AVAILABLE else twins.segment_extents
    return impl(id_map, num_segments, row_weight, col_weight, first_row, last_row, first_col, last_col)


def first_argmax(values: np.ndarray) -> np.ndarray:
    """See `postprocess_kernels.first_argmax`."""
    return compiled.first_argmax(values) if compiled.AVAILABLE else twins.first_argmax(values)


def warm_up() -> None:
    """Compile or load the kernels now (a no-op on the numpy path); see `postprocess_kernels.warm_up`."""
    compiled.warm_up()
