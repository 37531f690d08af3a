"""helm test: every URL given serves Prometheus metrics with OpenLFR families.

    python metrics-check.py http://openlfr-detect:9100/metrics ...

Retries each URL until LFR_TEST_TIMEOUT_S (default 60) so a pod that is still starting does
not fail the test. Exit 0 when all answered, 1 naming those that did not.
"""

import os
import sys
import time
import urllib.request


def scrape(url: str, timeout_s: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - cluster-internal http
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        return response.read().decode("utf-8", errors="replace")


def families(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE lfr_")}


def main(urls: list[str]) -> int:
    deadline = time.monotonic() + float(os.environ.get("LFR_TEST_TIMEOUT_S", "60"))
    pending = dict.fromkeys(urls, "not tried")
    while pending:
        for url in list(pending):
            try:
                found = families(scrape(url, 5))
                if found:
                    print(f"ok: {url}: {len(found)} lfr_* metric families", flush=True)
                    del pending[url]
                else:
                    pending[url] = "no lfr_* metrics"
            except Exception as exc:  # noqa: BLE001 - reported below
                pending[url] = f"{type(exc).__name__}: {exc}"
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(2)
    for url, reason in pending.items():
        print(f"FAIL: {url}: {reason}", flush=True)
    return 1 if pending or not urls else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
