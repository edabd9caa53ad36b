"""The end-to-end and long-run benchmarks' output at a tiny size (structure only, no timing checks)."""

from testbed.run.bench import end_to_end_bench, long_run_bench


def test_end_to_end_bench_reports_rate_memory_and_floor() -> None:
    r = end_to_end_bench(requests=600, nodes=20)
    assert r["requests"] > 0 and r["requests_per_s"] > 0 and r["simpy_floor_per_s"] > 0
    assert r["ratio"] == r["requests_per_s"] / r["simpy_floor_per_s"]
    assert r["peak_rss_bytes_per_request"] == r["peak_rss_mb"] * 1e6 / r["requests"]


def test_long_run_bench_reports_peaks_against_simulated_time() -> None:
    r = long_run_bench(hours=0.005, nodes=5)
    assert [r[f"at_{f}_simulated_s"] for f in ("0.25", "0.5", "1")] == [4.5, 9.0, 18.0]
    assert all(r[f"at_{f}_peak_rss_mb"] > 0 for f in ("0.25", "0.5", "1"))
    assert r["peak_growth_ratio"] > 0


def test_the_machine_ceiling_times_one_loop_alone_and_two_at_once() -> None:
    from testbed.run.bench import machine_ceiling

    out = machine_ceiling(customers=2000)
    assert out["floor_alone_s"] > 0 and out["floor_two_at_once_s"] > 0
    assert out["ceiling"] == out["floor_alone_s"] / out["floor_two_at_once_s"]
