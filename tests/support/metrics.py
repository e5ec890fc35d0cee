"""Reading /metrics output in tests: the issue's table of families, samples by name and labels, promtool
(test process)."""

from __future__ import annotations

import shutil
import subprocess

from prometheus_client.parser import text_string_to_metric_families

# Every family docs/metrics.md lists, with its type (counter families by their name without `_total`).
FAMILIES = {
    "framepool_build_info": "gauge",
    "framepool_ready": "gauge",
    "framepool_draining": "gauge",
    "framepool_loop_lag_seconds": "histogram",
    "framepool_loop_stalls": "counter",
    "framepool_agent_connected": "gauge",
    "framepool_agent_reconnects": "counter",
    "framepool_load_ratio": "gauge",
    "framepool_available": "gauge",
    "framepool_jobs_active": "gauge",
    "framepool_jobs": "counter",
    "framepool_job_requests": "counter",
    "framepool_job_assignment_timeouts": "counter",
    "framepool_dispatch_to_first_frame_seconds": "histogram",
    "framepool_workers": "gauge",
    "framepool_worker_restarts": "counter",
    "framepool_worker_pss_bytes": "gauge",
    "framepool_worker_cpu_seconds": "counter",
    "framepool_pool_halted": "gauge",
    "framepool_streams": "gauge",
    "framepool_frames_in": "counter",
    "framepool_frames_processed": "counter",
    "framepool_frames_out": "counter",
    "framepool_frames_dropped": "counter",
    "framepool_results": "counter",
    "framepool_blobs": "counter",
    "framepool_results_dropped": "counter",
    "framepool_processor_errors": "counter",
    "framepool_processor_busy_seconds": "counter",
    "framepool_ring_occupancy_max_ratio": "gauge",
    "framepool_ring_occupancy_mean_ratio": "gauge",
    "framepool_frame_processing_seconds": "histogram",
    "framepool_result_latency_seconds": "histogram",
    "framepool_data_messages_in": "counter",
    "framepool_data_messages_dropped": "counter",
    "framepool_data_messages_out": "counter",
    "framepool_results_published": "counter",
    "framepool_dataflow_intents": "counter",
    "framepool_spool_appended": "counter",
    "framepool_spool_refused": "counter",
    "framepool_spool_bytes": "gauge",
    "framepool_dead_letter_bytes": "gauge",
    "framepool_bridge_restarts": "counter",
}
# Families whose name says the unit (Prometheus base units only).
UNITS = ("_seconds", "_bytes", "_ratio")

Key = tuple[str, tuple[tuple[str, str], ...]]  # (sample name, sorted labels)


def families(text: bytes) -> dict[str, str]:
    """Family name -> type, as a scraper parses them."""
    return {family.name: family.type for family in text_string_to_metric_families(text.decode())}


def samples(text: bytes) -> dict[Key, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def totals(text: bytes) -> dict[Key, float]:
    """Every sample of a counter or a histogram's count, sum and buckets: what may never decrease."""
    kinds = families(text)
    return {
        key: value
        for key, value in samples(text).items()
        if any(
            kinds.get(key[0].removesuffix(suffix)) in ("counter", "histogram")
            for suffix in ("_total", "_count", "_sum", "_bucket")
        )
    }


def value(text: bytes, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (sample, keys), v in samples(text).items() if sample == name and wanted <= set(keys))


def promtool_problems(text: bytes) -> str:
    """What `promtool check metrics` says about `text` (empty when it passes); tests/support/servers.py
    names the Debian package that provides it."""
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool missing: `make servers` installs it (Debian package prometheus)"
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    problems = (result.stdout + result.stderr).decode().strip()
    return problems if result.returncode else ""
