"""Drill metrics: samples read from a run directory, pushed to Prometheus-compatible stores, and
KubeVirt's own migration metrics read back for the evidence. No Prefect, no kubernetes here.

- `rundir.samples_from_run_dir(run_dir)`: every `livedrill_*` sample of one finished run, labelled
  cluster, drill, run_id, mode, platform, outcome, quarter (+ vm, node, target_node, probe, window, ...),
  each stamped with when the drill measured it. Works the same for a live run and a years-old one.
- `export.export_run(run_dir, MetricsConfig)`: pushes them to every configured sink
  (`push.push_samples`: remote write, VictoriaMetrics import, Pushgateway) and reports each outcome.
- `export.kubevirt_evidence_for_run(run_dir, MetricsConfig, vms)`: KubeVirt's `kubevirt_vmi_migration_*`
  series over the drill's window, through the Prometheus HTTP API, for the evidence.
- `kubevirt.PrometheusDirtyRateMeter(metrics.kubevirt)`: a VM's `kubevirt_vmi_dirty_rate_bytes_per_second` for the
  pre-flight's convergence forecast (`forecast: {dirty_rate_bytes_per_s: measure}` on KubeVirt).

Stores: Prometheus must run with `--web.enable-remote-write-receiver`; to re-export runs older than
its head block (about an hour) it also needs `storage.tsdb.out_of_order_time_window` in its config.
VictoriaMetrics takes any timestamp inside its retention. The Pushgateway keeps no history and no
timestamps: use it only where nothing else is reachable. The dashboards in `dashboards/` read the
same series from any of them (Grafana: Dashboards > Import, then pick the Prometheus data source).
"""
