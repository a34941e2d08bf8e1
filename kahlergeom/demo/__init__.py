"""The main job (`kahlergeom demo`): train, build geometry, sample, measure, report."""

from kahlergeom.demo._pipeline import DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo"]
