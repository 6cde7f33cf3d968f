#!/usr/bin/env python3
"""Validates what can be validated here of deploy/'s packaging and deployment files:
- every YAML file under deploy/ parses;
- Kubernetes: the objects and their cross-references (selectors, named ports, volumes, probes on
  /readyz and /healthz, the ServiceMonitor's Service, kustomization resources), a non-root pod,
  and the ConfigMap's TOML accepted by `citygate --check-config`;
- docker-compose.yml: the services, and every file it mounts or builds from exists;
- Dockerfile: Debian 12 stages, non-root user, volume, ports, health check, and a runtime
  package list that provides every shared library the built binaries load (ldd + dpkg);
- backups: in each deployment (systemd, container, StatefulSet) storage.backup_dir is unset (so
  <data_dir>/backups) or lies under the data volume, the one writable path each of them has;
- systemd unit: `systemd-analyze verify` prints nothing, hardening options present, and
  `systemd-analyze security --offline` rates its exposure at most 2.0.
No Docker engine or Kubernetes cluster is needed (or available): images are not built here.
Usage: deploy_files.py CITYGATE_BINARY LOADGEN_BINARY
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import tomllib
import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
failures, skipped = [], []


def check(ok, message):
    if not ok:
        failures.append(message)
        print("FAIL:", message)
    return ok


def load_all(path):
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def check_yaml():
    paths = sorted(glob.glob(os.path.join(DEPLOY, "**", "*.y*ml"), recursive=True))
    for path in paths:
        try:
            load_all(path)
        except yaml.YAMLError as error:
            check(False, f"{os.path.relpath(path, ROOT)} does not parse: {error}")
    print(f"yaml: {len(paths)} files parse")


def check_config(citygate, text, where):
    """citygate --check-config accepts the TOML text."""
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as toml:
        toml.write(text)
        toml.flush()
        result = subprocess.run([citygate, "--config", toml.name, "--check-config"],
                                capture_output=True, text=True, timeout=30)
        check(result.returncode == 0, f"citygate --check-config refuses {where}: {result.stdout}{result.stderr}")


def url_host_port(url):
    match = re.match(r"^[a-z]+://([^/:]+):(\d+)", url)
    return (match.group(1), int(match.group(2))) if match else (None, None)


def check_kubernetes(citygate):
    k8s = os.path.join(DEPLOY, "kubernetes")
    kustomization = load_all(os.path.join(k8s, "kustomization.yaml"))[0]
    files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(k8s, "*.yaml")))
    check(sorted(kustomization["resources"]) == sorted(f for f in files if f != "kustomization.yaml"),
          f"kustomization.yaml resources {kustomization['resources']} differ from the files {files}")
    objects = [doc for name in kustomization["resources"] for doc in load_all(os.path.join(k8s, name))]
    by_kind = {}
    for obj in objects:
        check({"apiVersion", "kind", "metadata"} <= obj.keys(), f"object without apiVersion/kind/metadata: {obj}")
        by_kind.setdefault(obj["kind"], []).append(obj)
    for kind in ("StatefulSet", "Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor", "ConfigMap"):
        check(kind in by_kind, f"no {kind} in deploy/kubernetes")
    workloads = {w["metadata"]["name"]: w for kind in ("StatefulSet", "Deployment") for w in by_kind.get(kind, [])}
    check({"citygate", "emqx", "victoria-metrics", "prometheus-fleet"} <= workloads.keys(),
          f"the scaled topology's workloads are not all there: {sorted(workloads)}")
    services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    config_maps = {c["metadata"]["name"]: c for c in by_kind["ConfigMap"]}

    def pod_labels(workload):
        return workload["spec"]["template"]["metadata"]["labels"]

    def selects(selector, workload):
        return all(pod_labels(workload).get(k) == v for k, v in selector.items())

    def named_ports(workload):
        return {p["name"]: p["containerPort"] for c in workload["spec"]["template"]["spec"]["containers"]
                for p in c.get("ports", [])}

    for name, workload in workloads.items():
        spec, pod = workload["spec"], workload["spec"]["template"]["spec"]
        check(selects(spec["selector"]["matchLabels"], workload), f"{name}: selector does not match its pods")
        claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
        volumes = {v["name"] for v in pod.get("volumes", [])} | claims
        for container in pod["containers"]:
            for mount in container.get("volumeMounts", []):
                check(mount["name"] in volumes, f"{name}: volumeMount {mount['name']} has no volume")
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                if probe in container:
                    check(container[probe]["httpGet"]["port"] in named_ports(workload),
                          f"{name}: {probe} port is not a container port")
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                check(volume["configMap"]["name"] in config_maps,
                      f"{name}: volume {volume['name']} names no ConfigMap here")
        if workload["kind"] == "StatefulSet":
            check(spec["serviceName"] in services, f"{name}: serviceName {spec['serviceName']} is no Service")
    for name, service in services.items():
        targets = [w for w in workloads.values() if selects(service["spec"]["selector"], w)]
        if check(len(targets) == 1, f"Service {name} selects {len(targets)} workloads, not one"):
            for port in service["spec"]["ports"]:
                check(port["targetPort"] in named_ports(targets[0]),
                      f"Service {name} targets unknown port {port['targetPort']}")

    def service_port(host, port):
        """The Service a cluster URL names, if it serves that port."""
        service = services.get(host.split(".")[0])
        return service is not None and any(p["port"] == port for p in service["spec"]["ports"])

    sts = workloads["citygate"]
    spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    check("data" in claims, "StatefulSet has no volumeClaimTemplate for the data volume")
    check(services[spec["serviceName"]]["spec"].get("clusterIP") == "None",
          "StatefulSet serviceName is not a headless Service")
    container = pod["containers"][0]
    ports = named_ports(sts)
    check(ports == {"mqtt": 1883, "mqtts": 8883, "http": 8080}, f"container ports {ports}")
    check(any(m["mountPath"] == "/var/lib/citygate" and m["name"] in claims for m in container["volumeMounts"]),
          "the data directory is not on the claimed volume")
    check(container["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness is not /readyz")
    check(container["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness is not /healthz")
    check(pod["securityContext"].get("runAsNonRoot") is True, "pod may run as root")
    check(container["securityContext"].get("allowPrivilegeEscalation") is False, "privilege escalation allowed")
    check(container["securityContext"]["capabilities"]["drop"] == ["ALL"], "capabilities not dropped")
    check("cpu" in container["resources"].get("limits", {}),
          "citygate has no CPU limit (shards = 0 and io_threads = 0 size the gateway from it)")
    exposed = {p["port"] for s in services.values() for p in s["spec"]["ports"]}
    check({1883, 8080} <= exposed, "no Service for MQTT and HTTP")
    pdb = by_kind["PodDisruptionBudget"][0]["spec"]
    check(selects(pdb["selector"]["matchLabels"], sts), "PodDisruptionBudget selects no citygate pod")
    monitor = by_kind["ServiceMonitor"][0]["spec"]
    monitored = [s for s in services.values()
                 if all(s["metadata"]["labels"].get(k) == v for k, v in monitor["selector"]["matchLabels"].items())]
    check(len(monitored) == 1, f"the ServiceMonitor selects {len(monitored)} Services, not exactly one")
    for endpoint in monitor["endpoints"]:
        check(any(p["name"] == endpoint["port"] for s in monitored for p in s["spec"]["ports"]),
              f"ServiceMonitor endpoint port {endpoint['port']} is not on the Service")
    check("/metrics" in [e.get("path") for e in monitor["endpoints"]], "ServiceMonitor does not scrape /metrics")
    config_volume = next(v for v in pod["volumes"] if v["name"] == "config")
    config_map = config_maps.get(config_volume["configMap"]["name"])
    if check(config_map is not None, "the config volume names no ConfigMap here"):
        check(f"/etc/citygate/citygate.toml" in container["args"] or "--config" in container["args"],
              "the container is not started with the ConfigMap's file")
        text = config_map["data"]["citygate.toml"]
        check_config(citygate, text, "the ConfigMap")
        config = tomllib.loads(text)
        check(config.get("storage", {}).get("shards") == 0, "the ConfigMap does not size shards from the CPU limit")
        for upstream in config.get("upstream", []):
            check(service_port(*url_host_port(upstream["url"])),
                  f"[[upstream]] {upstream['url']} is not a Service and port here")
        remote_write = config.get("export", {}).get("remote_write", {})
        check(remote_write and service_port(*url_host_port(remote_write["url"])),
              f"[export.remote_write] {remote_write.get('url')} is not a Service and port here")
    # The fleet reader reads every citygate replica, by its stable pod name, and nothing else.
    fleet = yaml.safe_load(config_maps["prometheus-fleet-config"]["data"]["prometheus.yml"])
    want = [f"http://citygate-{i}.{spec['serviceName']}:{ports['http']}/api/v1/read" for i in range(spec["replicas"])]
    check([r["url"] for r in fleet.get("remote_read", [])] == want,
          f"prometheus-fleet reads {[r['url'] for r in fleet.get('remote_read', [])]}, want the replicas {want}")
    check(all(r.get("read_recent") is True and r.get("filter_external_labels") is False for r in fleet["remote_read"]),
          "prometheus-fleet remote_read needs read_recent: true and filter_external_labels: false")
    if shutil.which("promtool"):
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
            f.write(config_maps["prometheus-fleet-config"]["data"]["prometheus.yml"])
            f.flush()
            result = subprocess.run(["promtool", "check", "config", f.name], capture_output=True, text=True)
            check(result.returncode == 0, f"promtool refuses prometheus-fleet-config: {result.stdout}{result.stderr}")
    print(f"kubernetes: {len(objects)} objects checked")


def check_compose(citygate):
    compose = load_all(os.path.join(DEPLOY, "docker-compose.yml"))[0]
    services = compose["services"]
    check({"citygate", "prometheus", "grafana", "mosquitto"} <= services.keys(), f"compose services {list(services)}")
    build = services["citygate"]["build"]
    check(os.path.isfile(os.path.join(DEPLOY, build["context"], build["dockerfile"])), "compose builds no Dockerfile")
    named = set(compose.get("volumes", {}))
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                check(os.path.exists(os.path.join(DEPLOY, source)), f"compose {name} mounts missing {source}")
            else:
                check(source in named, f"compose {name} uses undeclared volume {source}")
    check(any(v.endswith(":/var/lib/citygate") for v in services["citygate"]["volumes"]), "citygate data is not a volume")
    prometheus_config = next(a for a in services["prometheus"]["command"] if a.startswith("--config.file="))
    check(os.path.isfile(os.path.join(DEPLOY, "prometheus", os.path.basename(prometheus_config.split("=", 1)[1]))),
          "the compose Prometheus config is not in deploy/prometheus")
    provider = load_all(os.path.join(DEPLOY, "grafana", "provisioning", "dashboards", "citygate.yml"))[0]
    dashboard_dir = provider["providers"][0]["options"]["path"]
    check(any(v.startswith("./grafana:" + dashboard_dir) for v in services["grafana"]["volumes"]),
          "Grafana's dashboard provider path is not where compose mounts deploy/grafana")
    scale = {name: service for name, service in services.items() if "scale" in service.get("profiles", [])}
    consumers = sorted(name for name in scale if name.startswith("citygate-"))
    check(len(consumers) >= 2 and {"broker", "victoria-metrics", "prometheus-fleet"} <= scale.keys(),
          f"the compose profile scale lacks the scaled topology: {sorted(scale)}")
    for name in consumers:
        service = scale[name]
        check(service.get("hostname") == name, f"compose {name}: hostname (its upstream client id) is not {name}")
        check("cpus" in service, f"compose {name}: no CPU limit to size shards from")
        config_arg = service["command"][service["command"].index("--config") + 1]
        mounted = next((v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == config_arg), None)
        if check(mounted is not None, f"compose {name}: {config_arg} is not mounted"):
            text = open(os.path.join(DEPLOY, mounted)).read()
            check_config(citygate, text, f"compose {name}'s {mounted}")
            config = tomllib.loads(text)
            for upstream in config.get("upstream", []):
                host, _ = url_host_port(upstream["url"])
                check(host in scale, f"compose {name}: upstream {upstream['url']} is no compose service")
            host, _ = url_host_port(config.get("export", {}).get("remote_write", {}).get("url", ""))
            check(host in scale, f"compose {name}: remote write goes to {host}, no compose service")
    bridge = open(os.path.join(DEPLOY, "mosquitto", "bridge.conf")).read()
    check(re.search(r"^address citygate:1883$", bridge, re.M) is not None, "mosquitto does not bridge to citygate")
    print(f"compose: {len(services)} services checked")


def check_dockerfile(binaries):
    text = open(os.path.join(DEPLOY, "Dockerfile")).read()
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, re.M)
    check(len(stages) >= 2 and all(image.startswith("debian:12") for image, _ in stages),
          f"Dockerfile stages are not Debian 12 multi-stage: {stages}")
    runtime = text[text.rindex("\nFROM "):]
    check(re.search(r"^USER (?!root|0\b)\S+", runtime, re.M) is not None, "the runtime stage runs as root")
    check('VOLUME ["/var/lib/citygate"]' in runtime, "no data volume /var/lib/citygate")
    check(re.search(r"^EXPOSE 1883 8883 8080$", runtime, re.M) is not None, "EXPOSE 1883 8883 8080 missing")
    check(re.search(r"HEALTHCHECK[^\n]*\\\n[^\n]*/healthz", runtime) is not None, "no HEALTHCHECK on /healthz")
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        check(source == "." or os.path.exists(os.path.join(ROOT, source)), f"Dockerfile copies missing {source}")
    install = re.search(r"apt-get install[^\n]*\\\n((?:[^\n]*\\\n)+)", runtime)
    listed = set(re.findall(r"[a-z0-9][a-z0-9.+-]+", install.group(1).replace("\\", " ").split("&&")[0]))
    if shutil.which("dpkg-query") is None or shutil.which("ldd") is None:
        skipped.append("Dockerfile runtime libraries (no dpkg/ldd)")
        return
    status = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Priority}\t${Depends}\t${Pre-Depends}\n"],
                            capture_output=True, text=True).stdout
    installed = {}
    for line in status.splitlines():
        name, priority, depends, pre = (line.split("\t") + ["", "", ""])[:4]
        installed[name] = (priority, re.findall(r"(?:^|[,|]\s*)([a-z0-9][a-z0-9.+-]+)", f"{depends}, {pre}"))
    for package in sorted(listed):
        check(package in installed, f"runtime package {package} is not a Debian 12 package installed here")
    provided, todo = set(), [p for p in installed if installed[p][0] == "required"] + sorted(listed)
    while todo:  # the listed packages, what apt brings with them, and debian:12-slim's own
        package = todo.pop().split(":")[0]
        if package in provided or package not in installed:
            continue
        provided.add(package)
        todo.extend(installed[package][1])
    libraries = set()
    for binary in binaries:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
        libraries.update(m for m in re.findall(r"=> (/\S+)", out))
    for library in sorted(libraries):
        owner = subprocess.run(["dpkg", "-S", os.path.realpath(library)], capture_output=True, text=True)
        if owner.returncode != 0:
            owner = subprocess.run(["dpkg", "-S", library], capture_output=True, text=True)
        packages = {p.strip().split(":")[0] for p in owner.stdout.split(": ")[0].split(",")} if owner.returncode == 0 else set()
        check(packages & provided, f"{library} (package {packages or '?'}) is not in the runtime image")
    print(f"Dockerfile: {len(stages)} stages, {len(libraries)} shared libraries covered by {sorted(listed)}")


def check_backup_location():
    """Checkpoints must land where each deployment lets the gateway write: its data volume."""
    example = os.path.join(DEPLOY, "citygate.example.toml")
    unit = open(os.path.join(DEPLOY, "systemd", "citygate.service")).read()
    dockerfile = open(os.path.join(DEPLOY, "Dockerfile")).read()
    config_map = next(doc for doc in load_all(os.path.join(DEPLOY, "kubernetes", "configmap.yaml"))
                      if doc.get("kind") == "ConfigMap")
    sts = load_all(os.path.join(DEPLOY, "kubernetes", "statefulset.yaml"))[0]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    data_mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "data")
    writable_unit = re.findall(r"^ReadWritePaths=(\S+)", unit, re.M)
    volume = re.findall(r'^VOLUME \["([^"]+)"\]', dockerfile, re.M)
    deployments = [
        # (name, TOML text, the --data-dir it runs with, the paths it may write)
        ("systemd", open(example).read(), re.search(r"^ExecStart=.*--data-dir (\S+)", unit, re.M).group(1),
         writable_unit),
        ("container", open(example).read(), re.search(r'"--data-dir", "([^"]+)"', dockerfile).group(1), volume),
        ("StatefulSet", config_map["data"]["citygate.toml"],
         container["args"][container["args"].index("--data-dir") + 1], [data_mount]),
    ]
    for name, text, data_dir, writable in deployments:
        storage = tomllib.loads(text).get("storage", {})
        backup_dir = storage.get("backup_dir") or os.path.join(data_dir, "backups")
        inside = lambda path, root: os.path.normpath(path) == os.path.normpath(root) or \
            os.path.normpath(path).startswith(os.path.normpath(root) + "/")
        check(any(inside(data_dir, w) for w in writable),
              f"{name}: the data directory {data_dir} is not in its writable paths {writable}")
        check(os.path.isabs(backup_dir) and any(inside(backup_dir, w) for w in writable),
              f"{name}: checkpoints go to {backup_dir}, outside its writable paths {writable}")
    print(f"backups: {len(deployments)} deployments write checkpoints on their data volume")


def check_systemd(citygate):
    unit = os.path.join(DEPLOY, "systemd", "citygate.service")
    text = open(unit).read()
    for option in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/citygate",
                   "PrivateTmp=yes", "CapabilityBoundingSet=\n", "ProtectHome=yes", "SystemCallFilter=",
                   "RestrictAddressFamilies=", "KillSignal=SIGTERM"):
        check(option in text, f"citygate.service lacks {option.strip()}")
    analyze = shutil.which("systemd-analyze")
    if analyze is None and os.geteuid() == 0 and shutil.which("apt-get"):
        # Only for this check; nothing here needs a running systemd.
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "systemd"],
                       capture_output=True, timeout=300, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        analyze = shutil.which("systemd-analyze")
    if analyze is None:
        skipped.append("systemd-analyze verify (systemd not installed)")
        return
    with tempfile.TemporaryDirectory(prefix="citygate-systemd.") as work:
        # verify checks that ExecStart's program exists: point it at the binary just built.
        copy = os.path.join(work, "citygate.service")
        with open(copy, "w") as f:
            f.write(text.replace("/usr/bin/citygate", os.path.abspath(citygate)))
        result = subprocess.run([analyze, "verify", "--man=no", copy], capture_output=True, text=True, timeout=60)
        output = (result.stdout + result.stderr).strip()
        check(result.returncode == 0 and not output, f"systemd-analyze verify: rc {result.returncode}: {output}")
        result = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", copy],
                                capture_output=True, text=True, timeout=60)
        exposure = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout + result.stderr)
        if check(exposure is not None, f"systemd-analyze security gave no rating: {result.stdout}{result.stderr}"):
            check(float(exposure.group(1)) <= 2.0, f"systemd exposure {exposure.group(1)} above 2.0")
            print(f"systemd: verify clean, exposure {exposure.group(1)}")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    citygate, loadgen = sys.argv[1:]
    check_yaml()
    check_kubernetes(citygate)
    check_compose(citygate)
    check_dockerfile([citygate, loadgen])
    check_backup_location()
    check_systemd(citygate)
    print("not run here: docker build / docker compose up (no Docker engine), kubectl apply (no cluster)")
    if failures:
        sys.exit(f"{len(failures)} problem(s)")
    if skipped:
        print("SKIP: not checked:", "; ".join(skipped))
        sys.exit(77)
    print("PASS: deploy files valid")


if __name__ == "__main__":
    main()
