"""A short tune alone and beside one busy process: how much slower does sharing the CPUs make it?

    python bench/sharing.py [--preset tiny|demo] [--data DIR] [--trials 3] [--out bench/results/sharing.json]

The tune is the ``--preset`` on its scenario (tiny: cnn-lstm; demo: resnet-transformer, the demo
cube; one architecture, one run, ``--trials`` trials, no manual run), through the CLI as a user runs
it. It is timed
- alone;
- beside a busy process (torch matrix products on as many threads as this process may use CPUs),
  with the wait policy insarcast chooses (passive, since the machine is then busy: insarcast.cpus);
- the same with the spinning wait forced (INSARCAST_WAIT=active, what OpenMP and ONNX Runtime did
  before), for comparison;
- beside a twin: the same tune started at the same moment in a second process (two demos at once).
Each setting runs once, in that order; the ratios to the time alone are the figures. The goal
(issue 18): beside one equally busy process, no worse than 2.5x the time alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import preset_cube, write_json  # noqa: E402

BUSY = ("import torch, sys\n"
        "torch.set_num_threads(int(sys.argv[1]))\n"
        "a = torch.randn(512, 512)\n"
        "while True:\n"
        "    a = torch.tanh(a @ a)\n")


ARCH = {"tiny": "cnn-lstm", "demo": "resnet-transformer"}


def tune_args(cube: Path, out: Path, trials: int, preset: str) -> list[str]:
    return [sys.executable, "-m", "insarcast", "tune", "--cube", str(cube), "--preset", preset, "--arch", ARCH[preset],
            "--runs", "1", "--trials", str(trials), "--no-manual", "--out", str(out), "-q"]


def time_tune(cube: Path, out: Path, trials: int, env: dict[str, str], preset: str = "tiny") -> float:
    tick = time.perf_counter()
    subprocess.run(tune_args(cube, out, trials, preset), check=True, env=env, capture_output=True)
    return time.perf_counter() - tick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE / "results" / "data")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--preset", choices=sorted(ARCH), default="tiny")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sharing.json")
    args = parser.parse_args()
    from insarcast.cpus import thread_settings, usable_cpus

    cube = preset_cube(args.data, args.preset)
    preset = args.preset
    cpus = usable_cpus()
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "INSARCAST_WAIT")}
    runs = args.data / f"sharing-runs-{preset}"
    shutil.rmtree(runs, ignore_errors=True)               # this benchmark's own scratch runs, made anew
    seconds = {"alone": time_tune(cube, runs / "alone", args.trials, base, preset)}
    busy = subprocess.Popen([sys.executable, "-c", BUSY, str(cpus)])
    try:
        time.sleep(5)                                      # let the load average see it
        seconds["busy_auto"] = time_tune(cube, runs / "busy_auto", args.trials, base, preset)
        seconds["busy_spinning"] = time_tune(cube, runs / "busy_spinning", args.trials,
                                             {**base, "INSARCAST_WAIT": "active"}, preset)
        settings = thread_settings().to_dict()
    finally:
        busy.kill()
        busy.wait()
    twin = subprocess.Popen(tune_args(cube, runs / "twin_other", args.trials, preset), env=base,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        seconds["beside_twin"] = time_tune(cube, runs / "twin", args.trials, base, preset)
    finally:
        twin.wait()
    record = {"preset": preset, "usable_cpus": cpus, "trials": args.trials, "seconds": seconds,
              "ratio": {k: v / seconds["alone"] for k, v in seconds.items()}, "settings_while_busy": settings,
              "load_at_end": os.getloadavg()}
    write_json(args.out, record)
    print(json.dumps(record, indent=1))
    for name, value in seconds.items():
        print(f"{name:14s} {value:7.1f} s  {value / seconds['alone']:5.2f}x")


if __name__ == "__main__":
    main()
