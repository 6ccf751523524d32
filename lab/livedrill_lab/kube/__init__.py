"""An embedded KubeVirt lab: a Kubernetes-API server on 127.0.0.1 and a simulated virt-controller.

The real `kubernetes` client and `kubectl` talk to it unchanged (HTTPS with the lab's own CA: client-go
sends a bearer token only over TLS). Everything runs in one process, `python -m livedrill_lab.kube`,
started by `livedrill_lab.manager` (`start_lab`, `lab_status`, `stop_lab`, `running_lab` for tests).

Modules:
  server.py      HTTP/1.1 API: discovery, CRUD, patches, watch / watch-list, Tables, /lab/v1 endpoints
  store.py       objects, the global resourceVersion, the bounded watch history (410 once compacted)
  controller.py  virt-controller + virt-handler: the reconcile loop; its docstring lists the fault knobs
                 (annotations lab.livedrill.io/...)
  migration.py   one migration's state machine: phases, migrationState, cancel, endings
  admission.py   the VMIM admission webhook
  eviction.py    the eviction webhook, evacuation, the evacuate-cancel and migrate subresources
  scheduling.py  placing virt-launcher pods (new VMIs, migration targets)
  freezer.py     the real SIGSTOP/SIGCONT freeze and its ground-truth record
  handler_metrics.py  virt-handler's and virt-controller's Prometheus metrics (the VMIs' dirty rates, migration
                 progress and phases) on GET /metrics of a loopback port of its own (LabInfo.metrics_url)
  launcher.py    virt-launcher pods and the VMI status virt-handler reports
  cluster.py     the kinds, reads and writes the controller's parts share; config.py ControllerConfig
  precopy.py     the pure pre-copy model that decides iterations, duration, downtime or failure
  policy.py      pure decisions: migration settings, placement, parallelism, eviction strategy, GC
  faults.py      API-level faults: POST /lab/v1/faults {"path_regex", "status", "count", "delay_ms", ...}
  tls.py         the throwaway CA and server certificate

Lab endpoints (bearer token as for the API): GET /lab/v1/freezes (ground truth of every pause),
GET|POST|DELETE /lab/v1/faults, POST /lab/v1/compact (forget the watch history, like etcd compaction).
"""
