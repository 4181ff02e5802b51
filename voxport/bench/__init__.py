"""Benchmarks: voxport against PyTorch side by side (suite.py, `voxport bench`), the roofline
(roofline.py, machine.py), the report (report.py) and the browser (web_bench.py)."""
