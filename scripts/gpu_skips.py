"""Fails when a GPU test of quarry_tests skipped: the step of scripts/gpu-check.sh --remote that
makes the GPU check unable to pass without the GPU being used.

    python3 scripts/gpu_skips.py quarry_tests.xml   (gtest's --gtest_output=xml report)

A GPU test is one that skips with the message "no CUDA device" where no GPU can be used (every test
that starts with QUARRY_REQUIRE_GPU(), the cuda instances of the OnEveryBackend suites included),
or whose name says cuda or gpu. None of them may skip, except for the reasons in ALLOWED_SKIPS; and
at least one must have run.
"""

import re
import sys
import xml.etree.ElementTree as ET

# A second GPU a one-GPU machine lacks; the tests of the no-GPU path, which skip where one is.
ALLOWED_SKIPS = ("needs two CUDA devices", "a GPU is present")
GPU_SKIP = "no CUDA device"


def classify(report: str) -> tuple[int, list[str], list[str]]:
    """(GPU tests run, GPU tests skipped with their reasons, GPU tests skipped as allowed)."""
    ran, skipped, allowed = 0, [], []
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname')}.{case.get('name')}"
        skip = case.find("skipped")
        message = "" if skip is None else f"{skip.get('message') or ''} {skip.text or ''}".strip()
        if GPU_SKIP not in message and not re.search(r"cuda|gpu", name, re.IGNORECASE):
            continue
        if skip is None:
            ran += 1
        elif any(reason in message for reason in ALLOWED_SKIPS):
            allowed.append(name)
        else:
            skipped.append(f"{name}: {message.splitlines()[-1] if message else 'skipped'}")
    return ran, skipped, allowed


def main() -> int:
    try:
        ran, skipped, allowed = classify(sys.argv[1])
    except (OSError, ET.ParseError) as e:
        print(f"gpu-check: no test report ({e}): quarry_tests did not finish", file=sys.stderr)
        return 1
    print(f"GPU tests run: {ran}; skipped: {len(skipped)}; skipped as allowed: {len(allowed)}")
    for name in allowed:
        print(f"  allowed skip: {name}")
    for line in skipped[:30]:
        print(f"  SKIPPED: {line}")
    if skipped or ran == 0:
        print("gpu-check: GPU tests skipped, or none ran: the GPU was not used", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
