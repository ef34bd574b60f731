package deploy

import (
	"fmt"
	"maps"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/publish"
	"github.com/ayrbridge/ayrbridge/schema"
)

// TestDeployFilesParse parses each deployment file on its own as its kind.
func TestDeployFilesParse(t *testing.T) {
	files := readDeployFiles(t, ".")
	for _, src := range sources() {
		t.Run(src.pattern, func(t *testing.T) {
			n := 0
			for _, name := range files.sorted() {
				if kind, _ := kindOf(name); kind != src.kind {
					continue
				}
				n++
				var p problems
				parse(deployFiles{name: files[name]}, &p)
				for _, msg := range p {
					t.Errorf("%s: %s", src.kind, msg)
				}
			}
			if n == 0 {
				t.Errorf("no %s file", src.kind)
			}
		})
	}
}

// TestDeployFilesAgree runs every check on the committed deployment files: each variable they set
// is one its command reads, and the files agree with each other and with the code.
func TestDeployFilesAgree(t *testing.T) {
	for _, msg := range checkAll(readDeployFiles(t, "."), loadCode(t)) {
		t.Error(msg)
	}
}

// TestChecksCatchMistakes feeds the checks deliberately wrong deployment files (the committed ones
// with one edit, or an added file) and expects each mistake to be reported.
func TestChecksCatchMistakes(t *testing.T) {
	tests := map[string]struct {
		file     string
		old, new string // old "" adds file with content new
		want     string
	}{
		"compose: misspelt variable": {
			"compose.yaml", `BRIDGE_LISTEN: ":8080"`, `BRIDGE_LISTN: ":8080"`,
			"service bridge sets BRIDGE_LISTN, which bridge does not read"},
		"compose: bridge variable on the replay": {
			"compose.yaml", "AYRSHARE_API_KEY: ${AYRSHARE_API_KEY:-}", "AYRSHARE_API_KEY: x\n      BRIDGE_MAX_CONNS: \"5\"",
			"service replay sets BRIDGE_MAX_CONNS, which replay does not read"},
		"compose: list-form environment": {
			"compose.yaml",
			"      NATS_URL: nats://nats:4222\n      NATS_STREAM: AYRSHARE\n      AYRSHARE_API_KEY: ${AYRSHARE_API_KEY:-}\n      AYRSHARE_API_URL: ${AYRSHARE_API_URL:-}\n      AYRSHARE_PROFILE_KEYS: ${AYRSHARE_PROFILE_KEYS:-}\n      LOG_FORMAT: json\n      LOG_LEVEL: ${LOG_LEVEL:-info}\n",
			"      - NATS_URL=nats://nats:4222\n      - NATS_STREEM=AYRSHARE\n      - AYRSHARE_API_KEY\n",
			"service replay sets NATS_STREEM"},
		"compose: duration that is not one": {
			"compose.yaml", "NATS_DEDUP_WINDOW: 24h", `NATS_DEDUP_WINDOW: "86400"`,
			`NATS_DEDUP_WINDOW="86400", which is not a duration`},
		"compose: replay without profile": {
			"compose.yaml", "profiles: [replay]", "profiles: [tools]",
			`no replay service under the profile "replay"`},
		"compose: two images": {
			"compose.yaml", "image: ghcr.io/ayrbridge/ayrbridge:${AYRBRIDGE_TAG:-dev}", "image: ayrbridge:dev",
			"bridge and replay use different images"},
		"compose: env_file the check cannot see": {
			"compose.yaml", "read_only: true", "read_only: true\n    env_file: .env",
			"field env_file not found"},
		"compose: no JetStream volume": {
			"compose.yaml", "      - nats-data:/data\n", "",
			"service nats keeps JetStream on no named volume"},
		"compose: service of the image without build": {
			"compose.yaml", "volumes:\n  nats-data:", "  debug:\n    image: ghcr.io/ayrbridge/ayrbridge:${AYRBRIDGE_TAG:-dev}\n    environment:\n      NATS_URL: nats://nats:4222\n      BRIDGE_LISTN: \":9\"\n\nvolumes:\n  nats-data:",
			"service debug sets BRIDGE_LISTN"},
		"compose: replicas for a cluster": {
			"compose.yaml", `NATS_REPLICAS: "1"`, `NATS_REPLICAS: "3"`,
			"compose runs a single NATS server"},
		"compose: replay binary elsewhere": {
			"compose.yaml", `entrypoint: ["/usr/local/bin/replay"]`, `entrypoint: ["/replay"]`,
			"service replay runs /replay, but the image installs its commands in /usr/local/bin"},
		"compose: edge with a misspelt NATS_HUB_URL": {
			"compose.yaml", "NATS_HUB_URL: nats-leaf://hub:7422", "NATS_HUB_ULR: nats-leaf://hub:7422",
			"service edge-1 sets NATS_HUB_ULR, which bridge does not read"},
		"compose: edge dialling another leaf port": {
			"compose.yaml", "NATS_HUB_URL: nats-leaf://hub:7422", "NATS_HUB_URL: nats-leaf://hub:4222",
			"NATS_HUB_URL nats-leaf://hub:4222: service hub takes leaf connections on port 7422"},
		"compose: edge dialling no hub": {
			"compose.yaml", "NATS_HUB_URL: nats-leaf://hub:7422", "NATS_HUB_URL: nats-leaf://nats:7422",
			"service nats takes no leaf connections"},
		"compose: edge without an id": {
			"compose.yaml", "      NATS_EDGE_ID: edge-1\n", "",
			"service edge-1 has no NATS_EDGE_ID"},
		"compose: edge inheriting another's id": {
			"compose.yaml", "      NATS_EDGE_ID: edge-2\n", "",
			"service edge-2 has the NATS_EDGE_ID edge-1 of service edge-1"},
		"compose: edge store off its volume": {
			"compose.yaml", "      - edge-2-data:/data\n", "      - edge-2-data:/var/lib/edge\n",
			"service edge-2 keeps its store /data on no writable named volume"},
		"compose: two edges on one volume": {
			"compose.yaml", "      - edge-2-data:/data\n", "      - edge-1-data:/data\n",
			"service edge-1 shares its store volume edge-1-data with service edge-2"},
		"compose: edge in a plain up": {
			"compose.yaml", "  edge-1: &edge\n    profiles: [edge]\n", "  edge-1: &edge\n",
			"service edge-1 is an edge without a profile"},
		"compose: hub in a plain up": {
			"compose.yaml", "  hub:\n    profiles: [edge]\n", "  hub:\n",
			"service hub, the hub of edge-1, has no profile"},
		"compose: edge looking in another domain": {
			"compose.yaml", "      NATS_EDGE_ID: edge-2\n", "      NATS_EDGE_ID: edge-2\n      NATS_HUB_DOMAIN: central\n",
			`service edge-2 looks for the hub's JetStream in domain "central" (NATS_HUB_DOMAIN), service hub runs domain "hub"`},
		"kubernetes: one replica": {
			"kubernetes/deployment.yaml", "replicas: 2", "replicas: 1",
			"the Deployment must run at least 2 replicas"},
		"kubernetes: readiness on the wrong path": {
			"kubernetes/deployment.yaml", "path: /readyz", "path: /ready",
			"readinessProbe asks /ready, want /readyz"},
		"kubernetes: probes on another port": {
			"kubernetes/deployment.yaml", "containerPort: 8080", "containerPort: 9090",
			"livenessProbe asks port http (9090), but the bridge listens on 8080"},
		"kubernetes: writable root filesystem": {
			"kubernetes/deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false",
			"container bridge securityContext lacks readOnlyRootFilesystem: true"},
		"kubernetes: privilege escalation": {
			"kubernetes/replay-cronjob.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true",
			"container replay securityContext lacks allowPrivilegeEscalation: false"},
		"kubernetes: misspelt ConfigMap key": {
			"kubernetes/configmap.yaml", `BRIDGE_LISTEN: ":8080"`, `BRIDGE_LISTN: ":8080"`,
			"(envFrom ConfigMap/ayrbridge-bridge) sets BRIDGE_LISTN, which bridge does not read"},
		"kubernetes: replay variable on the bridge": {
			"kubernetes/deployment.yaml", "          env:\n", "          env:\n            - name: AYRSHARE_PROFILE_KEYS\n              value: x\n",
			"container bridge sets AYRSHARE_PROFILE_KEYS, which bridge does not read"},
		"kubernetes: Secret without the key referred to": {
			"kubernetes/secret.yaml", "AYRSHARE_API_KEY:", "AYRSHARE_APIKEY:",
			"AYRSHARE_API_KEY refers to key AYRSHARE_API_KEY, which Secret/ayrbridge-secrets does not have"},
		"kubernetes: replicas differ from stream.json": {
			"kubernetes/configmap.yaml", `NATS_REPLICAS: "3"`, `NATS_REPLICAS: "1"`,
			`sets NATS_REPLICAS="1", nats/stream.json has 3 replicas`},
		"kubernetes: nightly replay beyond the dedup window": {
			"kubernetes/replay-cronjob.yaml", `args: ["--since", "24h"]`, `args: ["--since", "48h"]`,
			"replays 48h0m0s back, beyond the dedup window 24h0m0s"},
		"kubernetes: replay command outside the image's bin": {
			"kubernetes/replay-job.yaml", `command: ["/usr/local/bin/replay"]`, `command: ["/bin/replay"]`,
			"runs /bin/replay, but the image installs its commands in /usr/local/bin"},
		"kubernetes: job image tag drifts": {
			"kubernetes/replay-job.yaml", "ghcr.io/ayrbridge/ayrbridge:0.1.0", "ghcr.io/ayrbridge/ayrbridge:0.2.0",
			"images does not pin ghcr.io/ayrbridge/ayrbridge to the tag 0.2.0"},
		"kubernetes: other image repository": {
			"kubernetes/replay-cronjob.yaml", "ghcr.io/ayrbridge/ayrbridge:0.1.0", "docker.io/someone/ayrbridge:0.1.0",
			"want one repository for bridge and replay"},
		"kubernetes: manifest not in the kustomization": {
			"kubernetes/kustomization.yaml", "  - pdb.yaml\n", "",
			"does not list pdb.yaml"},
		"kubernetes: PDB selects nothing": {
			"kubernetes/pdb.yaml", "  selector:\n    matchLabels:\n      app.kubernetes.io/name: ayrbridge", "  selector:\n    matchLabels:\n      app.kubernetes.io/name: other",
			"no PodDisruptionBudget selects the bridge Deployment's pods"},
		"kubernetes: added manifest with a wrong variable": {
			"kubernetes/debug.yaml", "", "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: debug\nspec:\n  template:\n    spec:\n      containers:\n        - name: replay\n          image: ghcr.io/ayrbridge/ayrbridge:0.1.0\n          command: [/usr/local/bin/replay]\n          args: [--since, 1h]\n          env:\n            - name: AYRSHARE_APIKEY\n              value: x\n",
			"Job debug container replay sets AYRSHARE_APIKEY, which replay does not read"},
		"kubernetes: edge as a Deployment": {
			"kubernetes/edge-statefulset.yaml", "kind: StatefulSet", "kind: Deployment",
			"Deployment ayrbridge-edge container bridge runs an edge outside a StatefulSet"},
		"kubernetes: edge id shared by the replicas": {
			"kubernetes/edge-statefulset.yaml", "              valueFrom:\n                fieldRef:\n                  fieldPath: metadata.name\n", "              value: edge-1\n",
			"does not take NATS_EDGE_ID from the pod's name"},
		"kubernetes: edge store on no claim": {
			"kubernetes/edge-statefulset.yaml", "              mountPath: /data\n", "              mountPath: /store\n",
			"keeps its store /data on no volumeClaimTemplate"},
		"kubernetes: edge volume not writable": {
			"kubernetes/edge-statefulset.yaml", "        fsGroup: 65532\n", "",
			"the pod has no securityContext.fsGroup"},
		"kubernetes: edge with NATS_URL too": {
			"kubernetes/edge-statefulset.yaml", "  NATS_HUB_DOMAIN: hub\n", "  NATS_HUB_DOMAIN: hub\n  NATS_URL: nats://nats:4222\n",
			"sets both NATS_URL and NATS_HUB_URL"},
		"kubernetes: edge without its headless Service": {
			"kubernetes/edge-statefulset.yaml", "  clusterIP: None\n", "",
			`serviceName "ayrbridge-edge-pods" names no headless Service`},
		"kubernetes: profile secrets mounted with subPath": {
			"kubernetes/deployment.yaml", "              mountPath: /etc/ayrbridge/profiles\n", "              mountPath: /etc/ayrbridge/profiles\n              subPath: m1\n",
			"container bridge mounts profile-secrets at /etc/ayrbridge/profiles with subPath m1, which kubelet never updates"},
		"kubernetes: profile secrets directory not mounted": {
			"kubernetes/configmap.yaml", "AYRSHARE_PROFILE_SECRETS_DIR: /etc/ayrbridge/profiles", "AYRSHARE_PROFILE_SECRETS_DIR: /etc/ayrbridge/profile",
			"sets AYRSHARE_PROFILE_SECRETS_DIR=/etc/ayrbridge/profile, but mounts no volume at /etc/ayrbridge/profile"},
		"kubernetes: profile secrets unreadable for the bridge": {
			"kubernetes/deployment.yaml", "        fsGroup: 65532\n", "",
			"volume profile-secrets has defaultMode 0440 and the pod no securityContext.fsGroup"},
		"kubernetes: edge profile secrets off their mount": {
			"kubernetes/edge-statefulset.yaml", "  AYRSHARE_PROFILE_SECRETS_DIR: /etc/ayrbridge/profiles\n", "  AYRSHARE_PROFILE_SECRETS_DIR: /etc/ayrbridge/hub/profiles\n",
			"StatefulSet ayrbridge-edge container bridge sets AYRSHARE_PROFILE_SECRETS_DIR=/etc/ayrbridge/hub/profiles, but mounts no volume"},
		"kubernetes: certificate on no mount": {
			"kubernetes/configmap.yaml", "  # BRIDGE_TLS_CERT_FILE: /etc/ayrbridge/tls/tls.crt\n  # BRIDGE_TLS_KEY_FILE: /etc/ayrbridge/tls/tls.key\n", "  BRIDGE_TLS_CERT_FILE: /etc/tls/tls.crt\n  BRIDGE_TLS_KEY_FILE: /etc/tls/tls.key\n",
			"sets BRIDGE_TLS_CERT_FILE=/etc/tls/tls.crt, but mounts no volume at /etc/tls"},
		"kubernetes: HTTPS bridge probed over HTTP": {
			"kubernetes/configmap.yaml", "  # BRIDGE_TLS_CERT_FILE: /etc/ayrbridge/tls/tls.crt\n  # BRIDGE_TLS_KEY_FILE: /etc/ayrbridge/tls/tls.key\n", "  BRIDGE_TLS_CERT_FILE: /etc/ayrbridge/tls/tls.crt\n  BRIDGE_TLS_KEY_FILE: /etc/ayrbridge/tls/tls.key\n",
			"container bridge livenessProbe asks with scheme HTTP, but the bridge serves HTTPS"},
		"kubernetes: edge in the hub-side kustomization": {
			"kubernetes/kustomization.yaml", "  - pdb.yaml\n", "  - pdb.yaml\n  - edge-statefulset.yaml\n",
			"lists edge-statefulset.yaml, an edge"},
		"stream.json: another dedup window": {
			"nats/stream.json", `"duplicate_window": 86400000000000`, `"duplicate_window": 3600000000000`,
			"duplicate_window is 1h0m0s, the bridge creates 24h0m0s"},
		"stream.json: memory storage": {
			"nats/stream.json", `"storage": "file"`, `"storage": "memory"`,
			"storage is Memory, the bridge creates File"},
		"stream.json: misspelt field": {
			"nats/stream.json", `"num_replicas"`, `"replicas"`,
			`unknown field "replicas"`},
		"nats: one server name for all nodes": {
			"nats/cluster-node.conf", "server_name: $SERVER_NAME", "server_name: nats",
			"no config runs a 3-node cluster"},
		"nats: a route missing": {
			"nats/cluster-node.conf", "    nats://nats-2.nats:6222\n", "",
			"want a named cluster with 3 routes"},
		"nats: default max_payload": {
			"nats/single-node.conf", "max_payload: 2MB", "max_payload: 1MB",
			"is below the 1114112 bytes the bridge's largest message needs"},
		"nats: compose config without JetStream": {
			"nats/single-node.conf", "jetstream {", "xjetstream_off {",
			"does not load in nats-server"},
		"nats: hub without a domain": {
			"nats/hub.conf", "  domain: hub\n", "",
			`nats/hub.conf: takes leaf connections but has no jetstream domain`},
		"nats: hub in another domain": {
			"nats/hub.conf", "  domain: hub\n", "  domain: central\n",
			`looks for the hub's JetStream in domain "hub" (NATS_HUB_DOMAIN), which no hub config in deploy/nats runs ([central])`},
		"nats: no hub config": {
			"nats/hub.conf", "leafnodes {\n  listen: 0.0.0.0:7422\n", "leafnodes {\n",
			"no config is a hub for edges"},
		"nats: hub off the leaf port compose dials": {
			"nats/hub.conf", "listen: 0.0.0.0:7422", "listen: 0.0.0.0:7433",
			"NATS_HUB_URL nats-leaf://hub:7422: service hub takes leaf connections on port 7433"},
		"grafana: an edge metric left out": {
			"grafana/ayrbridge.json", "ayrbridge_edge_sourcing_consumers", "ayrbridge_edge_hub_attached",
			"shows nothing of ayrbridge_edge_sourcing_consumers"},
		"grafana: metric the bridge does not serve": {
			"grafana/ayrbridge.json", "ayrbridge_duplicates_total", "ayrbridge_dupes_total",
			"queries ayrbridge_dupes_total, which no ayrbridge program serves"},
		"grafana: a metric left out": {
			"grafana/ayrbridge.json", "ayrbridge_nats_reconnects_total", "ayrbridge_nats_connected",
			"shows nothing of ayrbridge_nats_reconnects_total"},
		"grafana: histogram without _bucket": {
			"grafana/ayrbridge.json", "ayrbridge_publish_duration_seconds_bucket", "ayrbridge_publish_duration_seconds",
			"queries ayrbridge_publish_duration_seconds, which no ayrbridge program serves"},
		"grafana: a replay metric left out": {
			"grafana/ayrbridge.json", "ayrbridge_replay_profiles_stopped", "ayrbridge_replay_profiles",
			"shows nothing of ayrbridge_replay_profiles_stopped"},
		"prometheus: unknown metric in a rule": {
			"prometheus/alerts.yaml", `ayrbridge_nats_connected{job="ayrbridge"} == 0`, `ayrbridge_nats_up{job="ayrbridge"} == 0`,
			"alert AyrbridgeNATSDisconnected queries ayrbridge_nats_up, which no ayrbridge program serves"},
		"prometheus: metric of another exporter": {
			"prometheus/alerts.yaml", `min(process_start_time_seconds{job="ayrbridge"})`, `min(node_boot_time_seconds{job="ayrbridge"})`,
			"alert AyrbridgeWebhooksSilent queries node_boot_time_seconds, which is neither an ayrbridge metric"},
		"prometheus: alert without severity": {
			"prometheus/alerts.yaml", "          severity: critical\n", "",
			"alert AyrbridgeAllDown has no severity label"},
		"prometheus: unknown severity": {
			"prometheus/alerts.yaml", "severity: warning", "severity: page",
			`alert AyrbridgeInstanceDown has severity "page", want critical, warning or info`},
		"prometheus: alert without description": {
			"prometheus/alerts.yaml", "description:", "runbook:",
			"alert AyrbridgeInstanceDown has no description annotation"},
		"prometheus: misspelt rule key": {
			"prometheus/alerts.yaml", "        for: 5m", "        four: 5m",
			"field four not found"},
		"prometheus: alert without a firing test": {
			"prometheus/alerts.yaml", "alert: AyrbridgeReplayDown", "alert: AyrbridgeReplayGone",
			"alert AyrbridgeReplayGone has no test in which it fires"},
		"prometheus: alert never tested quiet": {
			"prometheus/alerts_test.yaml", "      - eval_time: 3m\n        alertname: AyrbridgeReplayProfileStopped\n        exp_alerts: []\n", "",
			"alert AyrbridgeReplayProfileStopped has no test in which it stays quiet"},
		"prometheus: test of an alert no rule defines": {
			"prometheus/alerts_test.yaml", "alertname: AyrbridgeReplayDown", "alertname: AyrbridgeReplayDwn",
			`test "bridges go down one after the other" expects alert AyrbridgeReplayDwn, which no rule file defines`},
		"prometheus: rule on a job nothing scrapes": {
			"prometheus/alerts.yaml", `up{job="ayrbridge-replay"} == 0`, `up{job="replay"} == 0`,
			`alert AyrbridgeReplayDown selects job "replay", which no scrape job of prometheus.yml has`},
		"prometheus: scrape job renamed": {
			"prometheus/prometheus.yml", "job_name: ayrbridge-replay\n    kubernetes_sd_configs", "job_name: replay\n    kubernetes_sd_configs",
			"scrapes the pods of Deployment ayrbridge-replay as jobs [replay], want [ayrbridge-replay]"},
		"prometheus: keep rule that misses the replay": {
			"prometheus/prometheus.yml", "regex: true;ayrbridge;replay-continuous", "regex: true;ayrbridge;replay",
			"scrapes the pods of Deployment ayrbridge-replay as jobs [], want [ayrbridge-replay]"},
		"prometheus: replay scraped as a bridge too": {
			"prometheus/prometheus.yml", "regex: true;ayrbridge;(bridge|edge)", "regex: true;ayrbridge;(bridge|edge|replay-continuous)",
			"scrapes the pods of Deployment ayrbridge-replay as jobs [ayrbridge ayrbridge-replay], want [ayrbridge-replay]"},
		"prometheus: Pushgateway without honor_labels": {
			"prometheus/prometheus.yml", "honor_labels: true", "honor_labels: false",
			"has no static job with honor_labels: true for the Pushgateway"},
		"prometheus: rules not loaded": {
			"prometheus/prometheus.yml", "rule_files: [alerts.yaml]", "rule_files: []",
			"does not load prometheus/alerts.yaml"},
		"kubernetes: two continuous replays": {
			"kubernetes/replay-deployment.yaml", "replicas: 1", "replicas: 2",
			"the continuous replay must run exactly 1 replica"},
		"kubernetes: continuous replay rolled over": {
			"kubernetes/replay-deployment.yaml", "type: Recreate", "type: RollingUpdate",
			"the Deployment's strategy must be Recreate"},
		"kubernetes: replay liveness on another port": {
			"kubernetes/replay-deployment.yaml", "containerPort: 9091", "containerPort: 9092",
			"livenessProbe asks port metrics (9092), but the replay serves /healthz on 9091 (REPLAY_METRICS_LISTEN)"},
		"kubernetes: replay scraped on another port": {
			"kubernetes/replay-deployment.yaml", `prometheus.io/port: "9091"`, `prometheus.io/port: "8080"`,
			`the annotation prometheus.io/port is "8080", but it serves /metrics on 9091`},
		"kubernetes: continuous replay pushing": {
			"kubernetes/replay-deployment.yaml", "          env:\n", "          env:\n            - name: REPLAY_PUSHGATEWAY_URL\n              value: http://pushgateway:9091\n",
			"sets REPLAY_PUSHGATEWAY_URL, which the replay refuses with --every"},
		"kubernetes: continuous replay without metrics": {
			"kubernetes/replay-deployment.yaml", "            - name: REPLAY_METRICS_LISTEN\n              value: \":9091\"\n", "",
			"runs --every without REPLAY_METRICS_LISTEN"},
		"kubernetes: continuous replay with a gap between passes": {
			"kubernetes/replay-deployment.yaml", `args: ["--every", "15m", "--since", "3h"]`, `args: ["--every", "15m", "--since", "10m"]`,
			"replays --since 10m0s, no more than its --every 15m0s"},
		"kubernetes: nightly run that never ends": {
			"kubernetes/replay-cronjob.yaml", `args: ["--since", "24h"]`, `args: ["--every", "1h", "--since", "24h"]`,
			"runs --every 1h in a CronJob, which would then never complete"},
		"kubernetes: bridge not scraped": {
			"kubernetes/deployment.yaml", `prometheus.io/scrape: "true"`, `prometheus.io/scrape: "false"`,
			"Deployment ayrbridge-bridge container bridge has no annotation prometheus.io/scrape"},
		"kubernetes: continuous replay not in the kustomization": {
			"kubernetes/kustomization.yaml", "  - replay-deployment.yaml\n", "",
			"does not list replay-deployment.yaml"},
		"compose: continuous replay port not published": {
			"compose.yaml", `- "9091:9091"`, `- "9092:9092"`,
			"service replay-continuous does not publish its metrics port 9091"},
		"compose: continuous replay beside the one-shot": {
			"compose.yaml", "profiles: [replay-continuous]", "profiles: [replay]",
			"profile replay starts the replays [replay replay-continuous] together"},
		"compose: continuous replay not restarted": {
			"compose.yaml", "    restart: unless-stopped\n\n  hub:", "    restart: \"no\"\n\n  hub:",
			`service replay-continuous runs --every but restart is "no"`},
		"compose: continuous replay without metrics": {
			"compose.yaml", "      REPLAY_METRICS_LISTEN: \":9091\"\n", "",
			"service replay-continuous runs --every without REPLAY_METRICS_LISTEN"},
		"compose: replay in a plain up": {
			"compose.yaml", "  replay-continuous:\n    profiles: [replay-continuous]\n", "  replay-continuous:\n",
			"service replay-continuous is a replay without a profile"},
		"Dockerfile: root user": {
			"Dockerfile", "USER 65532:65532", "USER root",
			`final stage USER "root" is not a numeric non-root user`},
		"Dockerfile: HEALTHCHECK": {
			"Dockerfile", "EXPOSE 8080 4222", "EXPOSE 8080 4222\nHEALTHCHECK CMD [\"/usr/local/bin/bridge\", \"-h\"]",
			"has a HEALTHCHECK"},
		"Dockerfile: port not exposed": {
			"Dockerfile", "EXPOSE 8080 4222", "EXPOSE 4222",
			"does not EXPOSE 8080"},
		"Dockerfile: cgo": {
			"Dockerfile", "ENV CGO_ENABLED=0", "ENV CGO_ENABLED=1",
			"does not build with CGO_ENABLED=0"},
		"Dockerfile: misspelt ENV": {
			"Dockerfile", "ENV NATS_EMBEDDED_DIR=/data", "ENV NATS_EMBEDED_DIR=/data",
			"ENV sets NATS_EMBEDED_DIR, which bridge does not read"},
		"Dockerfile: image with a shell": {
			"Dockerfile", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM debian:bookworm-slim",
			"is neither scratch nor distroless static"},
	}
	files := readDeployFiles(t, ".")
	code := loadCode(t)
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			mutated := maps.Clone(files)
			mutated[tt.file] = mutate(t, files[tt.file], tt.old, tt.new)
			got := checkAll(mutated, code)
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("no problem reported contains %q; got:\n%s", tt.want, strings.Join(got, "\n"))
			}
		})
	}
}

// mutate replaces the first old in data by new; old "" gives new as the whole content.
func mutate(t testing.TB, data []byte, old, new string) []byte {
	t.Helper()
	if old == "" {
		return []byte(new)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("the edit does not apply: %q is not in the file", old)
	}
	return []byte(strings.Replace(string(data), old, new, 1))
}

func TestComposeEnvironment(t *testing.T) {
	str := func(s string) *string { return &s }
	tests := map[string]struct {
		yaml string
		want map[string]*string
	}{
		"map":            {"A: x\nB:\nC: \"\"\n", map[string]*string{"A": str("x"), "B": nil, "C": str("")}},
		"list":           {"- A=x\n- B\n- C=\n- D=a=b\n", map[string]*string{"A": str("x"), "B": nil, "C": str(""), "D": str("a=b")}},
		"absent":         {"", map[string]*string{}},
		"numbers quoted": {"N: 1\n", map[string]*string{"N": str("1")}},
		"merged":         {"<<: {A: x, B: y}\nB: z\n", map[string]*string{"A": str("x"), "B": str("z")}},
		"merged after":   {"B: z\n<<: [{A: x, B: y}, {C: w}]\n", map[string]*string{"A": str("x"), "B": str("z"), "C": str("w")}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(tt.yaml), &n); err != nil {
				t.Fatal(err)
			}
			var doc yaml.Node
			if len(n.Content) > 0 {
				doc = *n.Content[0]
			}
			got, err := composeEnvironment(doc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("composeEnvironment = %v, want %v", derefAll(got), derefAll(tt.want))
			}
		})
	}
}

func derefAll(m map[string]*string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = "<unset>"
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

func TestSinceArg(t *testing.T) {
	tests := []struct {
		args []string
		want time.Duration
		ok   bool
	}{
		{[]string{"--since", "24h"}, 24 * time.Hour, true},
		{[]string{"-since=90m"}, 90 * time.Minute, true},
		{[]string{"--verbose", "--since=2h"}, 2 * time.Hour, true},
		{[]string{"since", "24h"}, 0, false},
		{[]string{"--since", "yesterday"}, 0, false},
		{nil, 0, false},
	}
	for _, tt := range tests {
		got, ok := sinceArg(tt.args)
		if got != tt.want || ok != tt.ok {
			t.Errorf("sinceArg(%q) = %s, %t; want %s, %t", tt.args, got, ok, tt.want, tt.ok)
		}
	}
}

// TestKustomizeBuilds renders deploy/kubernetes with kubectl's built-in kustomize, where kubectl is
// installed, and checks what `kubectl apply -k` would send.
func TestKustomizeBuilds(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed: the kustomization is checked only statically")
	}
	out, err := exec.CommandContext(t.Context(), kubectl, "kustomize", "kubernetes").Output()
	if err != nil {
		t.Fatalf("kubectl kustomize kubernetes: %v", err)
	}
	objs, err := parseKubernetes("kustomize output", out)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.Kind+"/"+o.name())
		if o.Metadata.Labels["app.kubernetes.io/part-of"] != "ayrbridge" {
			t.Errorf("%s/%s lacks the part-of label the kustomization adds", o.Kind, o.name())
		}
	}
	slices.Sort(kinds)
	want := []string{
		"ConfigMap/ayrbridge-bridge", "ConfigMap/ayrbridge-common", "CronJob/ayrbridge-replay-daily",
		"Deployment/ayrbridge-bridge", "Deployment/ayrbridge-replay", "PodDisruptionBudget/ayrbridge-bridge", "Secret/ayrbridge-secrets",
		"Service/ayrbridge-bridge",
	}
	if !slices.Equal(kinds, want) {
		t.Errorf("kustomize renders %v, want %v", kinds, want)
	}
}

// TestStreamJSONMatchesBridge creates the stream once as the bridge does and once from
// deploy/nats/stream.json, on a real server, and expects the same stream; the bridge then finds
// nothing to change in it.
func TestStreamJSONMatchesBridge(t *testing.T) {
	code := loadCode(t)
	var fromFile jetstream.StreamConfig
	if err := strictJSON(readDeployFiles(t, ".")["nats/stream.json"], &fromFile); err != nil {
		t.Fatal(err)
	}
	fromFile.Replicas = 1 // one test server; the 3 replicas are checked against the cluster config
	dedup, err := time.ParseDuration(code.def("NATS_DEDUP_WINDOW"))
	if err != nil {
		t.Fatal(err)
	}
	maxAge, err := time.ParseDuration(code.def("NATS_MAX_AGE"))
	if err != nil {
		t.Fatal(err)
	}
	bridgeCfg := publish.StreamConfig{
		Name:        code.def("NATS_STREAM"),
		Subjects:    []string{schema.StreamSubjects},
		Replicas:    1,
		DedupWindow: dedup,
		MaxAge:      maxAge,
	}
	ctx := t.Context()
	_, js := natstest.Connect(t, natstest.RunServer(t, ""))

	s, err := publish.EnsureStream(ctx, js, bridgeCfg)
	if err != nil {
		t.Fatal(err)
	}
	want := s.CachedInfo().Config
	if err := js.DeleteStream(ctx, want.Name); err != nil {
		t.Fatal(err)
	}
	// The deleted stream's store may still be going away under a loaded machine (the server
	// then answers "error creating store"), so the create is retried for a while.
	natstest.Eventually(t, 10*time.Second, func() error {
		s, err = js.CreateStream(ctx, fromFile)
		if err != nil {
			return fmt.Errorf("create stream from stream.json: %w", err)
		}
		return nil
	})
	got := s.CachedInfo().Config
	got.Metadata, want.Metadata = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stream from stream.json:\n%+v\nstream the bridge creates:\n%+v", got, want)
	}
	s, err = publish.EnsureStream(ctx, js, bridgeCfg)
	if err != nil {
		t.Fatalf("bridge refuses the stream from stream.json: %v", err)
	}
	after := s.CachedInfo().Config
	after.Metadata = nil
	if !reflect.DeepEqual(after, got) {
		t.Errorf("the bridge changed the stream from stream.json:\n%+v\nto\n%+v", got, after)
	}
}
