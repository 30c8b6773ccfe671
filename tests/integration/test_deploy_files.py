"""The container image and the Kubernetes examples (part 8), checked without a container
engine or a cluster:

- docker/Dockerfile: a Debian build stage making the same Release build scripts/test.sh
  compiles (CI builds it; not rebuilt here), a bookworm-slim runtime stage whose apt
  packages provide every shared library `ldd tagd` lists (dpkg -S maps each file to its
  package; apt-cache gives the dependency closure of what the stage installs), a non-root
  USER, the cache on a VOLUME, and a HEALTHCHECK that, run against a live tagd, probes
  /health (exit 0) and fails once tagd is gone.
- docs/kubernetes/*.yaml: every document parses; tagd's probes, port and scrape
  annotations name the real endpoints (asked of a live tagd), every TAG_* variable exists
  in the configuration table, every secretKeyRef names a key of a Secret in the same
  file, every container sets resources.
"""
import glob
import json
import os
import re
import shlex
import subprocess
import unittest

import yaml

import harness
from harness import TagdTestCase

DOCKERFILE = os.path.join(harness.SOURCE_DIR, "docker", "Dockerfile")
K8S_FILES = sorted(glob.glob(os.path.join(harness.SOURCE_DIR, "docs", "kubernetes", "*.yaml")))
# debian:bookworm-slim ships these (apt itself depends on them).
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}


def dockerfile_stages(path: str) -> list[dict]:
    """[{from, name, instructions: [(KEYWORD, argument text)]}] with continuation lines joined."""
    with open(path) as f:
        text = f.read()
    text = re.sub(r"\\\n", " ", text)
    stages = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            stages.append({"from": parts[0], "name": parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None,
                           "instructions": []})
        else:
            stages[-1]["instructions"].append((keyword, rest.strip()))
    return stages


def exec_form(argument: str) -> list[str]:
    """A JSON exec-form argument (["a", "b"]) or a shell-form one, as argv."""
    argument = argument.strip()
    if argument.startswith("["):
        return json.loads(argument)
    return ["/bin/sh", "-c", argument]


def env_of(stage: dict) -> dict:
    env = {}
    for keyword, rest in stage["instructions"]:
        if keyword == "ENV":
            for token in shlex.split(rest):
                k, _, v = token.partition("=")
                env[k] = v
    return env


def package_of(path: str) -> str:
    for candidate in (path, os.path.realpath(path)):
        r = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0].strip()
    # /lib is a symlink to /usr/lib on merged-/usr systems; dpkg knows one spelling.
    alt = path.replace("/usr/lib/", "/lib/", 1) if path.startswith("/usr/lib/") else "/usr" + path
    r = subprocess.run(["dpkg", "-S", alt], capture_output=True, text=True)
    if r.returncode == 0:
        return r.stdout.split(":")[0].strip()
    raise AssertionError(f"no Debian package provides {path}")


def dependency_closure(packages: set[str]) -> set[str]:
    r = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                        "--no-breaks", "--no-replaces", "--no-enhances", *sorted(packages)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return set(packages)  # no apt lists: only what is named explicitly counts
    closure = set(packages)
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith(("Depends:", "PreDepends:")):
            closure.add(line.split(":", 1)[1].strip().strip("<>").split(":")[0])
        elif line and not line.startswith("|") and ":" not in line:
            closure.add(line.strip("<>"))
    return closure


def config_env_names() -> set[str]:
    with open(os.path.join(harness.SOURCE_DIR, "src", "config", "config.cpp")) as f:
        names = set(re.findall(r'"(TAG_[A-Z0-9_]+)"', f.read()))
    return names | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


class DockerfileTest(TagdTestCase):
    def setUp(self):
        self.stages = dockerfile_stages(DOCKERFILE)
        self.build, self.runtime = self.stages[0], self.stages[-1]

    def test_multi_stage_release_build(self):
        self.assertGreaterEqual(len(self.stages), 2)
        self.assertEqual(self.build["from"], "debian:bookworm")
        self.assertEqual(self.runtime["from"], "debian:bookworm-slim")
        runs = " ".join(rest for k, rest in self.build["instructions"] if k == "RUN")
        self.assertIn("scripts/install-deps.sh", runs)
        self.assertIn("-DCMAKE_BUILD_TYPE=Release", runs)
        # The same configuration scripts/test.sh builds (CI), so the image's build is tested.
        with open(os.path.join(harness.SOURCE_DIR, "scripts", "test.sh")) as f:
            test_sh = f.read()
        self.assertRegex(test_sh, r"cmake .*-DCMAKE_BUILD_TYPE=Release -DTAGD_BUILD_TESTS=OFF")
        self.assertIn("-DTAGD_BUILD_TESTS=OFF", runs)
        copies = [rest for k, rest in self.runtime["instructions"] if k == "COPY"]
        self.assertTrue(any(f"--from={self.build['name']}" in c and "/tagd" in c for c in copies), copies)

    def test_runtime_packages_provide_every_library_tagd_links(self):
        runs = " ".join(rest for k, rest in self.runtime["instructions"] if k == "RUN")
        m = re.search(r"apt-get install -y --no-install-recommends (.*?)(&&|$)", runs)
        self.assertIsNotNone(m, runs)
        installed = {p for p in m.group(1).split() if not p.startswith("-")}
        provided = dependency_closure(installed) | BASE_IMAGE_PACKAGES
        ldd = subprocess.run(["ldd", harness.TAGD_BINARY], capture_output=True, text=True, check=True).stdout
        libraries = re.findall(r"=> (/\S+)", ldd)
        self.assertGreater(len(libraries), 5, ldd)
        needed = {lib: package_of(lib) for lib in libraries}
        missing = {lib: pkg for lib, pkg in needed.items() if pkg not in provided}
        self.assertEqual(missing, {}, f"libraries tagd links that the runtime stage does not install: {missing}")
        self.assertIn("ca-certificates", installed)  # https upstreams

    def test_non_root_user_and_cache_volume(self):
        users = [rest for k, rest in self.runtime["instructions"] if k == "USER"]
        self.assertTrue(users, "no USER in the runtime stage")
        user = users[-1].split(":")[0]
        self.assertNotIn(user, ("root", "0"))
        env = env_of(self.runtime)
        volumes = [v for k, rest in self.runtime["instructions"] if k == "VOLUME" for v in exec_form(rest)]
        self.assertIn(env["TAG_CACHE_DISK_PATH"], volumes)
        self.assertEqual(env["TAG_LISTEN_ADDRESS"], "0.0.0.0")
        self.assertIn(env["TAG_HTTP_PORT"], [rest.split("/")[0] for k, rest in self.runtime["instructions"]
                                             if k == "EXPOSE"])

    def test_healthcheck_probes_health_of_a_live_tagd(self):
        checks = [rest for k, rest in self.runtime["instructions"] if k == "HEALTHCHECK"]
        self.assertEqual(len(checks), 1)
        cmd = exec_form(checks[0].split("CMD", 1)[1])
        self.assertEqual(cmd[0], "/usr/local/bin/tagd")
        argv = [harness.TAGD_BINARY] + cmd[1:]
        env = dict(os.environ, TAG_HTTP_PORT=str(self.tagd.port))
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0, f"{argv}: {r.stdout}{r.stderr} (is `tagd healthcheck` wired in main.cpp?)")
        # Nothing listening: unhealthy.
        env["TAG_HTTP_PORT"] = str(harness.free_port())
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 1, r.stderr)

    def test_dockerignore_keeps_build_trees_out(self):
        with open(os.path.join(harness.SOURCE_DIR, ".dockerignore")) as f:
            patterns = {l.strip() for l in f if l.strip() and not l.startswith("#")}
        for p in (".git", "build", "build-*"):
            self.assertIn(p, patterns)


class KubernetesExamplesTest(TagdTestCase):
    def setUp(self):
        self.assertTrue(K8S_FILES, "no docs/kubernetes/*.yaml")
        self.docs = {}
        for path in K8S_FILES:
            with open(path) as f:
                self.docs[os.path.basename(path)] = [d for d in yaml.safe_load_all(f) if d]

    @staticmethod
    def pod_specs(docs):
        for d in docs:
            if d["kind"] in ("Deployment", "DaemonSet", "StatefulSet"):
                yield d, d["spec"]["template"]

    @staticmethod
    def containers(pod_spec):
        return pod_spec.get("initContainers", []) + pod_spec.get("containers", [])

    def tagd_container(self, pod_spec):
        found = [c for c in self.containers(pod_spec) if c["image"].split(":")[0].endswith("tagd")]
        self.assertEqual(len(found), 1)
        return found[0]

    def test_both_variants_exist(self):
        kinds = {d["kind"] for docs in self.docs.values() for d in docs}
        self.assertIn("Deployment", kinds)
        self.assertIn("DaemonSet", kinds)

    def test_probes_port_and_scrape_annotations_are_real(self):
        live = {path: harness.http_get(self.tagd.port, path)[0] for path in ("/ready", "/health", "/metrics")}
        self.assertEqual(live, {"/ready": 200, "/health": 200, "/metrics": 200})
        for name, docs in self.docs.items():
            for workload, template in self.pod_specs(docs):
                with self.subTest(file=name, workload=workload["metadata"]["name"]):
                    c = self.tagd_container(template["spec"])
                    env = {e["name"]: e.get("value") for e in c.get("env", [])}
                    port = int(env.get("TAG_HTTP_PORT", "8080"))
                    self.assertEqual(env.get("TAG_LISTEN_ADDRESS"), "0.0.0.0")  # kubelet probes the pod IP
                    self.assertIn(port, [p["containerPort"] for p in c["ports"]])
                    self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/ready", "port": port})
                    self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/health", "port": port})
                    if "startupProbe" in c:
                        self.assertEqual(c["startupProbe"]["httpGet"]["path"], "/health")
                    ann = template["metadata"]["annotations"]
                    self.assertEqual(ann["prometheus.io/scrape"], "true")
                    self.assertEqual(int(ann["prometheus.io/port"]), port)
                    self.assertEqual(ann["prometheus.io/path"], "/metrics")
                    # Longer than tagd's default drain (30 s).
                    self.assertGreater(template["spec"]["terminationGracePeriodSeconds"], 30)
                    mounts = {m["mountPath"] for m in c["volumeMounts"]}
                    self.assertIn(env["TAG_CACHE_DISK_PATH"], mounts)
                    sc = {**template["spec"].get("securityContext", {}), **c.get("securityContext", {})}
                    self.assertTrue(sc.get("runAsNonRoot"))
                    self.assertNotEqual(sc.get("runAsUser"), 0)

    def test_env_names_exist_in_the_config_table(self):
        known = config_env_names()
        for name, docs in self.docs.items():
            for workload, template in self.pod_specs(docs):
                c = self.tagd_container(template["spec"])
                for e in c.get("env", []):
                    with self.subTest(file=name, env=e["name"]):
                        self.assertIn(e["name"], known)

    def test_secret_refs_match_secret_keys(self):
        for name, docs in self.docs.items():
            secrets = {d["metadata"]["name"]: set(d.get("stringData", {})) | set(d.get("data", {}))
                       for d in docs if d["kind"] == "Secret"}
            refs = []
            for workload, template in self.pod_specs(docs):
                for c in self.containers(template["spec"]):
                    for e in c.get("env", []):
                        ref = e.get("valueFrom", {}).get("secretKeyRef")
                        if ref:
                            refs.append((ref["name"], ref["key"]))
                for v in template["spec"].get("volumes", []):
                    if "secret" in v:
                        for item in v["secret"].get("items", []):
                            refs.append((v["secret"]["secretName"], item["key"]))
            self.assertTrue(refs, f"{name}: credentials must come from a Secret")
            for secret, key in refs:
                with self.subTest(file=name, secret=secret, key=key):
                    self.assertIn(secret, secrets)
                    self.assertIn(key, secrets[secret])
            # tagd's upstream secret is never a literal in the pod spec.
            for workload, template in self.pod_specs(docs):
                c = self.tagd_container(template["spec"])
                literal = {e["name"] for e in c.get("env", []) if "value" in e}
                self.assertFalse(literal & {"TAG_UPSTREAM_SECRET_ACCESS_KEY", "TAG_CLIENT_SECRET_ACCESS_KEY",
                                            "AWS_SECRET_ACCESS_KEY"}, name)

    def test_resources_set(self):
        for name, docs in self.docs.items():
            for workload, template in self.pod_specs(docs):
                for c in self.containers(template["spec"]):
                    with self.subTest(file=name, container=c["name"]):
                        self.assertIn("memory", c["resources"]["requests"])
                        self.assertIn("memory", c["resources"]["limits"])

    def test_sidecar_and_daemonset_specifics(self):
        deployments = [(d, t) for docs in self.docs.values() for d, t in self.pod_specs(docs) if d["kind"] == "Deployment"]
        daemonsets = [(d, t) for docs in self.docs.values() for d, t in self.pod_specs(docs) if d["kind"] == "DaemonSet"]
        for d, t in deployments:
            port = int({e["name"]: e.get("value") for e in self.tagd_container(t["spec"])["env"]}["TAG_HTTP_PORT"])
            others = [c for c in t["spec"]["containers"] if not c["image"].split(":")[0].endswith("tagd")]
            self.assertTrue(others, "a sidecar needs the workload beside it")
            endpoints = {e.get("value") for c in others for e in c.get("env", []) if e["name"] == "AWS_ENDPOINT_URL"}
            self.assertEqual(endpoints, {f"http://127.0.0.1:{port}"})
        for d, t in daemonsets:
            spec = t["spec"]
            self.assertTrue(spec.get("nodeSelector"), "one tagd per GPU host: select GPU nodes")
            c = self.tagd_container(spec)
            self.assertTrue(spec.get("hostNetwork") or any("hostPort" in p for p in c["ports"]))
            cache = [v for v in spec["volumes"] if v["name"] in {m["name"] for m in c["volumeMounts"]
                                                                 if m["mountPath"] == "/var/cache/tagd"}]
            self.assertIn("hostPath", cache[0])


if __name__ == "__main__":
    unittest.main()
