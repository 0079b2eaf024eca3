#!/usr/bin/env python3
"""Offline checks of deploy/k8s, run by .ci/run:

  python3 deploy/k8s/check.py ROUTEMQ_BINARY

Every overlay renders with `kubectl kustomize`; every built-in kind
validates against the Kubernetes schemas (`kubernetes-validate --strict`);
custom resources (ServiceMonitor, ScaledObject), whose schemas are not
available offline, are checked field by field here; and the invariants that
matter hold: the grace period outlasts a drain plus the longest route
timeout, probes hit the metrics port, exactly one autoscaler targets the
workers, EMQX is configured as docs/loadtest.md says and authenticates its
clients, the mounted config is the shipped one apart from its [mqtt] and
[redis] tables and passes `routemq check-config`, every secret it names is
provided by a Secret, and every TLS file it names is on a mounted Secret.
Needs PyYAML and kubernetes-validate (pip install kubernetes-validate).
"""

import pathlib
import re
import subprocess
import sys
import tempfile
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["dev", "prod", "prod-keda"]
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def seconds(text):
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    if not match:
        raise ValueError(f"not a duration: {text}")
    value, unit = int(match[1]), match[2]
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def route_timeouts(config):
    """Every timeout a route or group sets (default 30 s)."""
    found = [30.0]

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("timeout"), str):
                found.append(seconds(node["timeout"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config.get("groups", []))
    walk(config.get("routes", []))
    return found


def one(objects, kind, name):
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name)]
    check(len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}")
    return matches[0] if matches else {}


def check_overlay(overlay, binary):
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        check=True, capture_output=True, text=True,
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as out:
        out.write(rendered)
    validated = subprocess.run(
        ["kubernetes-validate", "--strict", "--quiet", "--no-warn", out.name],
        capture_output=True, text=True,
    )
    check(validated.returncode == 0, f"{overlay}: schema validation failed:\n{validated.stdout}{validated.stderr}")
    objects = [o for o in yaml.safe_load_all(rendered) if o]

    config_map = one(objects, "ConfigMap", "routemq-gateway-config")
    mounted = config_map.get("data", {}).get("gateway.toml", "")
    shipped = tomllib.loads((ROOT / "deploy" / "gateway.toml").read_text())
    config = tomllib.loads(mounted)
    without_connections = lambda c: {k: v for k, v in c.items() if k not in ("mqtt", "redis")}
    check(without_connections(config) == without_connections(shipped),
          f"{overlay}: the mounted gateway.toml differs from deploy/gateway.toml beyond [mqtt] and [redis]")
    check({k: v for k, v in config["mqtt"].items() if k not in ("url", "username", "password_env", "tls")}
          == {k: v for k, v in shipped["mqtt"].items() if k != "url"},
          f"{overlay}: [mqtt] differs from the shipped one beyond the address and credentials")
    acl = one(objects, "ConfigMap", "emqx-acl").get("data", {}).get("acl.conf", "")
    check(acl == (ROOT / "deploy" / "emqx" / "acl.conf").read_text(),
          f"{overlay}: the EMQX ACL differs from deploy/emqx/acl.conf")
    with tempfile.TemporaryDirectory() as directory:
        path = pathlib.Path(directory) / "gateway.toml"
        path.write_text(mounted)
        checked = subprocess.run([binary, "check-config", str(path)], capture_output=True, text=True)
        check(checked.returncode == 0, f"{overlay}: check-config failed: {checked.stderr}")
    needed = re.findall(r"environment variable `([A-Z0-9_]+)`", checked.stdout)
    check("ROUTEMQ_MQTT_PASSWORD" in needed, f"{overlay}: the workers authenticate to the broker")

    deployment = one(objects, "Deployment", "routemq-gateway")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    drain = seconds(config.get("gateway", {}).get("drain_timeout", "15s"))
    longest = max(route_timeouts(config))
    check(pod.get("terminationGracePeriodSeconds", 30) > drain + longest,
          f"{overlay}: grace period {pod.get('terminationGracePeriodSeconds')} s is not above drain {drain} s + route timeout {longest} s")
    check("preStop" in container.get("lifecycle", {}), f"{overlay}: no preStop")
    env = {e["name"]: e for e in container.get("env", [])}
    metrics_port = int(env["ROUTEMQ_METRICS_ADDR"]["value"].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    check(ports.get("metrics") == metrics_port, f"{overlay}: the metrics port is not {metrics_port}")
    for probe, path in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")]:
        http = container.get(probe, {}).get("httpGet", {})
        check(http.get("path") == path and http.get("port") in ("metrics", metrics_port),
              f"{overlay}: {probe} is not {path} on the metrics port")
    check("limits" in container.get("resources", {}) and "requests" in container.get("resources", {}),
          f"{overlay}: no resource requests and limits")
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    for name in needed:
        ref = env.get(name, {}).get("valueFrom", {}).get("secretKeyRef")
        check(ref is not None, f"{overlay}: the config needs {name}, which no Secret provides")
        if ref and overlay == "dev":
            check(ref["key"] in secrets.get(ref["name"], {}).get("data", {}),
                  f"{overlay}: Secret {ref['name']} has no key {ref['key']}")
    secret_mounts = [m["mountPath"] for m in container.get("volumeMounts", [])
                     if any(v["name"] == m["name"] and "secret" in v for v in pod.get("volumes", []))]
    for section in ("mqtt", "redis"):
        for key, file in config.get(section, {}).get("tls", {}).items():
            check(any(file.startswith(mount.rstrip("/") + "/") for mount in secret_mounts),
                  f"{overlay}: {section}.tls.{key} `{file}` is on no mounted Secret")
    check(config["mqtt"]["url"].startswith("mqtts://") == overlay.startswith("prod"),
          f"{overlay}: prod workers reach the broker over TLS (dev over plain TCP)")

    autoscalers = [o for o in objects if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
    check(len(autoscalers) == 1, f"{overlay}: {len(autoscalers)} autoscalers target the workers")
    for scaler in autoscalers:
        check(scaler["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"],
              f"{overlay}: the {scaler['kind']} targets another workload")
        if scaler["kind"] == "ScaledObject":
            check(all(t["type"] == "prometheus" and "routemq_" in t["metadata"]["query"]
                      for t in scaler["spec"]["triggers"]),
                  f"{overlay}: ScaledObject triggers must query the workers' metrics")
    check(overlay.endswith("keda") == any(o["kind"] == "ScaledObject" for o in objects),
          f"{overlay}: the KEDA ScaledObject belongs to the keda overlay only")

    labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = one(objects, "PodDisruptionBudget", "routemq-gateway")
    check(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), f"{overlay}: the PDB misses the workers")
    service = one(objects, "Service", "routemq-gateway-metrics")
    monitor = one(objects, "ServiceMonitor", "routemq-gateway")
    check(monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items(),
          f"{overlay}: the ServiceMonitor misses the metrics Service")
    check({e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]},
          f"{overlay}: the ServiceMonitor scrapes a port the Service does not name")
    policy = one(objects, "NetworkPolicy", "routemq-gateway")
    check(policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items(), f"{overlay}: the NetworkPolicy misses the workers")

    emqx = one(objects, "StatefulSet", "emqx")
    emqx_env = {e["name"]: e.get("value") for e in emqx["spec"]["template"]["spec"]["containers"][0]["env"]}
    mqtt = config.get("mqtt", {})
    check(emqx_env.get("EMQX_AUTHENTICATION__1__BACKEND") == "built_in_database"
          and emqx_env.get("EMQX_AUTHENTICATION__1__BOOTSTRAP_FILE", "").startswith("/opt/emqx/etc/auth/"),
          f"{overlay}: EMQX authenticates clients from the mounted users file")
    acl = one(objects, "ConfigMap", "emqx-acl").get("data", {}).get("acl.conf", "")
    check(f'{{username, "{mqtt.get("username")}"}}' in acl,
          f"{overlay}: the EMQX ACL's gateway rules name the workers' user {mqtt.get('username')}")
    if mqtt["url"].startswith("mqtts://"):
        port = int(mqtt["url"].rsplit(":", 1)[1])
        check(emqx_env.get("EMQX_LISTENERS__SSL__DEFAULT__BIND", "").endswith(f":{port}"),
              f"{overlay}: EMQX has no TLS listener on {port}")
        emqx_service = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "emqx")
        check(port in [p["port"] for p in emqx_service["spec"]["ports"]], f"{overlay}: the emqx Service does not expose {port}")
    check(emqx_env.get("EMQX_MQTT__SHARED_SUBSCRIPTION_STRATEGY") in ("round_robin", "least_inflight"),
          f"{overlay}: EMQX shared-subscription strategy")
    check(seconds(emqx_env.get("EMQX_MQTT__RETRY_INTERVAL", "30s")) > longest,
          f"{overlay}: EMQX retry_interval must be above the longest route timeout {longest} s")
    check(int(emqx_env.get("EMQX_MQTT__MAX_INFLIGHT", "32")) >= mqtt.get("max_in_flight", 2048),
          f"{overlay}: EMQX max_inflight below the workers' receive maximum")
    packet = emqx_env.get("EMQX_MQTT__MAX_PACKET_SIZE", "1MB")
    packet_bytes = int(packet[:-2]) * 1024 * 1024 if packet.endswith("MB") else int(packet)
    check(packet_bytes >= mqtt.get("max_packet_size", 1048576), f"{overlay}: EMQX max_packet_size below the gateway's")
    print(f"{overlay}: {len(objects)} objects rendered, validated and checked")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "debug" / "routemq")
    for overlay in OVERLAYS:
        check_overlay(overlay, binary)
    job = subprocess.run(["kubectl", "kustomize", str(K8S / "loadtest")], check=True, capture_output=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as out:
        out.write(job)
    validated = subprocess.run(["kubernetes-validate", "--strict", "--quiet", "--no-warn", out.name], capture_output=True, text=True)
    check(validated.returncode == 0, f"loadtest: {validated.stdout}{validated.stderr}")
    if failures:
        print("\n".join(f"FAIL {f}" for f in failures))
        sys.exit(1)
    print("deploy/k8s: all checks passed")


if __name__ == "__main__":
    main()
