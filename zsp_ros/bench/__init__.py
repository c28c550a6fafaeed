"""Benchmarks: each writes JSON with machine and versions (see zsp_ros.utils.provenance)."""
