"""Simulated Moon: procedural terrain and a stereo renderer with exact ground truth."""

PRESETS = ("orbital", "oblique", "descent", "lander", "rover")  # viewpoint presets of sim.scene.plan_scene
SEQUENCES = ("descent", "lander", "rover")  # sequences of sim.sequence.render_sequence
