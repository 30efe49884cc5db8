"""Prometheus metrics: private registry, loopback exporter, the documented series."""

import urllib.request

from sleepstream.metrics import LATENCY_BUCKETS, Metrics


def test_metrics_registries_are_private_per_daemon():
    """Two Metrics objects do not share series."""
    a, b = Metrics(), Metrics()
    a.epochs.labels("bed1", "N2").inc()
    assert a.sample_value("sleepstream_epochs_total", {"device": "bed1", "stage": "N2"}) == 1
    assert b.sample_value("sleepstream_epochs_total", {"device": "bed1", "stage": "N2"}) is None


def test_metrics_exporter_serves_on_loopback_over_http():
    """serve(0) binds 127.0.0.1 and the scrape shows the latency histogram."""
    m = Metrics()
    port = m.serve(0)
    try:
        m.epoch_latency.labels("bed1").observe(0.0012)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        m.close()
    assert 'sleepstream_epoch_latency_seconds_count{device="bed1"} 1.0' in text
    assert 'sleepstream_epoch_latency_seconds_bucket{device="bed1",le="0.0015"} 1.0' in text
    assert 'sleepstream_epoch_latency_seconds_bucket{device="bed1",le="0.001"} 0.0' in text


def test_metrics_latency_buckets_start_fine():
    """The first bucket is 0.5 ms and buckets increase."""
    assert LATENCY_BUCKETS[0] == 0.0005
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


def test_every_device_series_exists_at_zero_once_the_device_is_added():
    """Every labelled series (drops, outbox drops, storage errors by kind, stages...) is
    exported for a device from the start, as 0: an alert on ``rate(...)`` sees 0, not an
    absent series. Checked for every family of the registry, so a new one is covered."""
    from sleepstream.metrics import Metrics

    m = Metrics()
    before = {f.name: len(f.samples) for f in m.registry.collect()}
    m.add_device("bed1")
    for family in m.registry.collect():
        if before[family.name]:
            continue  # an unlabelled series: present from the start anyway
        devices = {s.labels.get("device") for s in family.samples}
        assert devices == {"bed1"}, family.name
        values = [s.value for s in family.samples if not s.name.endswith("_created")]
        assert values and all(v == 0 for v in values), family.name
    assert m.sample_value("sleepstream_samples_dropped_total", {"device": "bed1"}) == 0
    assert m.sample_value("sleepstream_outbox_dropped_total", {"device": "bed1"}) == 0
