"""Print stereo_node's parameter reference (the README's table) from its declarations.

.venv/bin/python scripts/parameter_table.py
"""

from lunar_recon.ros.stereo_node import parameter_table

if __name__ == "__main__":
    print(parameter_table())
