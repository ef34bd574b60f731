package deploy

import (
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ayrbridge/ayrbridge/publish"
	"github.com/ayrbridge/ayrbridge/schema"
)

// bridgeMetrics are the Prometheus metrics the bridge serves on /metrics, with their types.
func bridgeMetrics() map[string]string {
	return map[string]string{
		"ayrbridge_http_requests_total":        "counter",
		"ayrbridge_events_total":               "counter",
		"ayrbridge_duplicates_total":           "counter",
		"ayrbridge_signature_failures_total":   "counter",
		"ayrbridge_publish_duration_seconds":   "histogram",
		"ayrbridge_http_in_flight_requests":    "gauge",
		"ayrbridge_ready":                      "gauge",
		"ayrbridge_nats_connected":             "gauge",
		"ayrbridge_nats_reconnects_total":      "counter",
		"ayrbridge_publish_groups_total":       "counter",
		"ayrbridge_publish_group_events_total": "counter",

		// Edge mode only (NATS_HUB_URL).
		"ayrbridge_edge_backlog_messages":           "gauge",
		"ayrbridge_edge_backlog_bytes":              "gauge",
		"ayrbridge_edge_budget_bytes":               "gauge",
		"ayrbridge_edge_oldest_backlog_age_seconds": "gauge",
		"ayrbridge_edge_forwarded_messages_total":   "counter",
		"ayrbridge_edge_sourcing_consumers":         "gauge",
		"ayrbridge_edge_hub_connected":              "gauge",
		"ayrbridge_edge_hub_attached":               "gauge",
		"ayrbridge_edge_attach_checks_total":        "counter",

		// Profile-secrets directory only (AYRSHARE_PROFILE_SECRETS_DIR).
		"ayrbridge_secrets_profiles":               "gauge",
		"ayrbridge_secrets_reloads_total":          "counter",
		"ayrbridge_secrets_last_reload_successful": "gauge",

		// TLS only (BRIDGE_TLS_CERT_FILE and BRIDGE_TLS_KEY_FILE).
		"ayrbridge_tls_certificate_expiry_timestamp_seconds": "gauge",
	}
}

// replayMetrics are the Prometheus metrics the replay serves on REPLAY_METRICS_LISTEN (or pushes to
// REPLAY_PUSHGATEWAY_URL), with their types.
func replayMetrics() map[string]string {
	return map[string]string{
		"ayrbridge_replay_missing_events_total":           "counter",
		"ayrbridge_replay_published_events_total":         "counter",
		"ayrbridge_replay_failed_events_total":            "counter",
		"ayrbridge_replay_passes_total":                   "counter",
		"ayrbridge_replay_last_success_timestamp_seconds": "gauge",
		"ayrbridge_replay_pass_duration_seconds":          "histogram",
		"ayrbridge_replay_history_requests_total":         "counter",
		"ayrbridge_replay_profiles":                       "gauge",
		"ayrbridge_replay_profiles_stopped":               "gauge",
		"ayrbridge_replay_interval_seconds":               "gauge",
	}
}

// knownMetrics are the ayrbridge metrics of every program.
func knownMetrics() map[string]string {
	m := bridgeMetrics()
	maps.Copy(m, replayMetrics())
	return m
}

// servedMetric returns the metric family a queried series name belongs to (a histogram's
// _bucket, _sum and _count go to the histogram), and whether a program serves that series.
func servedMetric(known map[string]string, name string) (string, bool) {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, suffix); ok && known[b] == "histogram" {
			return b, true
		}
	}
	typ, ok := known[name]
	return name, ok && typ != "histogram"
}

// ruleOtherMetrics are the metrics besides ayrbridge ones that alert rules may query: the
// scrape's own up, and the process collector's start time.
func ruleOtherMetrics() []string { return []string{"up", "process_start_time_seconds"} }

// The scrape jobs alerts.yaml selects; prometheus.yml must scrape the pods under these names.
const (
	bridgeJob = "ayrbridge"        // bridges and edges
	replayJob = "ayrbridge-replay" // the continuous replay
)

// Ports and paths the orchestrators use.
const (
	natsClientPort = 4222
	healthPath     = "/healthz"
	readyPath      = "/readyz"
	metricsPath    = "/metrics"
	clusterNodes   = 3
	leafPort       = "7422" // nats-server's default, for a NATS_HUB_URL without a port
)

// checkAll parses files and returns every problem found in or across them.
func checkAll(files deployFiles, code codeEnv) []string {
	var p problems
	d := parse(files, &p)
	c := checker{d: d, code: code, p: &p}
	c.dockerfile()
	c.compose()
	c.kubernetes()
	c.streams()
	c.natsConfs()
	c.dashboards()
	c.prometheusConfig()
	c.rules()
	return p
}

// checker holds what every check needs.
type checker struct {
	d    *deployment
	code codeEnv
	p    *problems
}

// envUse is one environment variable a deployment file sets for a command.
type envUse struct {
	file, where string
	prog        program
	name        string
	value       *string // nil when the value comes from a Secret or the shell
}

// env checks each variable against what its command reads, and literal values against the
// type of the command's default.
func (c checker) env(uses []envUse) {
	for _, u := range uses {
		if !c.code.knows(u.prog, u.name) {
			c.p.add(u.file, "%s sets %s, which %s does not read", u.where, u.name, u.prog)
			continue
		}
		def := c.code.reads[u.prog][u.name]
		if u.value == nil || strings.Contains(*u.value, "${") {
			continue
		}
		if _, err := time.ParseDuration(def); err == nil {
			if _, err := time.ParseDuration(*u.value); err != nil {
				c.p.add(u.file, "%s sets %s=%q, which is not a duration like its default %q", u.where, u.name, *u.value, def)
			}
		}
	}
}

// program returns the command a container runs: its command's binary, else the image's entrypoint.
func (c checker) program(file, where string, command []string) (program, bool) {
	ep, err := c.d.docker.entrypoint()
	if err != nil {
		return "", false // reported by the Dockerfile check
	}
	if len(command) == 0 {
		command = ep
	}
	bin := command[0]
	if path.Dir(bin) != path.Dir(ep[0]) {
		c.p.add(file, "%s runs %s, but the image installs its commands in %s", where, bin, path.Dir(ep[0]))
		return "", false
	}
	prog := program(path.Base(bin))
	if !slices.Contains(programs(), prog) {
		c.p.add(file, "%s runs %s, which is no ayrbridge command (%v)", where, bin, programs())
		return "", false
	}
	return prog, true
}

// bridgeListenPort is the port the bridge listens on with settings env (defaults where unset).
func (c checker) bridgeListenPort(file string, env map[string]string) int {
	addr, ok := env["BRIDGE_LISTEN"]
	if !ok {
		addr = c.code.def("BRIDGE_LISTEN")
	}
	port, err := listenPort(addr)
	if err != nil {
		c.p.add(file, "BRIDGE_LISTEN: %v", err)
	}
	return port
}

// dedupWindow is the bridge's NATS_DEDUP_WINDOW with settings env.
func (c checker) dedupWindow(env map[string]string) time.Duration {
	v, ok := env["NATS_DEDUP_WINDOW"]
	if !ok {
		v = c.code.def("NATS_DEDUP_WINDOW")
	}
	d, _ := time.ParseDuration(v)
	return d
}

// storeDir is the absolute directory of the embedded server's store with settings env: from env,
// else the image's ENV, else the code's default (relative ones to the image's WORKDIR).
func (c checker) storeDir(env map[string]string) string {
	dir, ok := env["NATS_EMBEDDED_DIR"]
	if !ok {
		dir, ok = c.imageEnv("NATS_EMBEDDED_DIR")
	}
	if !ok {
		dir = c.code.def("NATS_EMBEDDED_DIR")
	}
	if !path.IsAbs(dir) {
		dir = path.Join("/", c.d.docker.last("WORKDIR"), dir)
	}
	return path.Clean(dir)
}

// imageEnv returns what the image's ENV sets name to.
func (c checker) imageEnv(name string) (string, bool) {
	v, found := "", false
	for _, in := range c.d.docker.final() {
		if n, val, _ := strings.Cut(in.args, "="); in.cmd == "ENV" && n == name {
			v, found = val, true
		}
	}
	return v, found
}

// hubDomain is the JetStream domain an edge with settings env looks for its hub in.
func (c checker) hubDomain(env map[string]string) string {
	if d, ok := env["NATS_HUB_DOMAIN"]; ok {
		return d
	}
	return c.code.def("NATS_HUB_DOMAIN")
}

// dockerfile checks the image: static binaries, non-root numeric user, no shell-based
// healthcheck, the bridge's port exposed, the bridge as entrypoint, every variable it sets read.
func (c checker) dockerfile() {
	const file = "Dockerfile"
	df := c.d.docker
	if len(df.stages) == 0 {
		return // did not parse
	}
	var all strings.Builder
	for _, stage := range df.stages {
		for _, in := range stage {
			if in.cmd == "HEALTHCHECK" {
				c.p.add(file, "has a HEALTHCHECK: orchestrators probe %s and %s instead", healthPath, readyPath)
			}
			all.WriteString(in.cmd + " " + in.args + "\n")
		}
	}
	if !strings.Contains(all.String(), "CGO_ENABLED=0") {
		c.p.add(file, "does not build with CGO_ENABLED=0, so the binaries may not be static")
	}
	if !strings.Contains(all.String(), "./cmd/...") {
		c.p.add(file, "does not build ./cmd/..., so not every command is in the image")
	}
	base := strings.Fields(df.final()[0].args)
	if len(base) == 0 || (base[len(base)-1] != "scratch" && !strings.Contains(base[len(base)-1], "distroless/static")) {
		c.p.add(file, "final stage FROM %v is neither scratch nor distroless static", base)
	}
	user, _, _ := strings.Cut(df.last("USER"), ":")
	if uid, err := strconv.Atoi(user); err != nil || uid == 0 {
		c.p.add(file, "final stage USER %q is not a numeric non-root user", df.last("USER"))
	}
	exposed := strings.Fields(df.last("EXPOSE"))
	for _, port := range []int{c.bridgeListenPort(file, nil), natsClientPort} {
		if !slices.Contains(exposed, strconv.Itoa(port)) && !slices.Contains(exposed, strconv.Itoa(port)+"/tcp") {
			c.p.add(file, "does not EXPOSE %d", port)
		}
	}
	ep, err := df.entrypoint()
	if err != nil {
		c.p.add(file, "%v", err)
		return
	}
	if path.Base(ep[0]) != string(bridge) {
		c.p.add(file, "ENTRYPOINT %v does not run the bridge", ep)
	}
	copied := false
	var uses []envUse
	for _, in := range df.final() {
		switch in.cmd {
		case "COPY":
			f := strings.Fields(in.args)
			copied = copied || len(f) > 1 && strings.TrimSuffix(f[len(f)-1], "/") == path.Dir(ep[0])
		case "ENV":
			name, value, _ := strings.Cut(in.args, "=")
			uses = append(uses, envUse{file: file, where: "ENV", prog: bridge, name: name, value: &value})
		}
	}
	if !copied {
		c.p.add(file, "final stage copies nothing into %s, where ENTRYPOINT looks", path.Dir(ep[0]))
	}
	c.env(uses)
}

// compose checks the compose stack: the bridge and the replay built from deploy/Dockerfile as
// one image, the replay behind a profile, the variables they set, and NATS with JetStream; edges
// (NATS_HUB_URL) against the hub they dial.
func (c checker) compose() {
	const file = "compose.yaml"
	cf := c.d.compose
	if len(cf.Services) == 0 {
		c.p.add(file, "has no services")
		return
	}
	built := map[string]bool{} // repositories of the images built here
	for _, svc := range cf.Services {
		if svc.Build.Context != "" {
			repo, _ := imageRepo(svc.Image)
			built[repo] = true
		}
	}
	images := map[string]bool{}
	found := map[program][]composeService{}
	edgeIDs := map[string]string{} // NATS_EDGE_ID -> service
	var replays []string           // services
	for _, name := range slices.Sorted(maps.Keys(cf.Services)) {
		svc := cf.Services[name]
		where := "service " + name
		if repo, _ := imageRepo(svc.Image); !built[repo] {
			continue // not an ayrbridge image (NATS)
		}
		if path.Clean(svc.Build.Context) != ".." || svc.Build.Dockerfile != "deploy/Dockerfile" {
			c.p.add(file, "%s builds %q in context %q, want deploy/Dockerfile from the repository root (..)", where, svc.Build.Dockerfile, svc.Build.Context)
		}
		images[svc.Image] = true
		prog, ok := c.program(file, where, svc.Entrypoint)
		if !ok {
			continue
		}
		found[prog] = append(found[prog], svc)
		env, err := composeEnvironment(svc.Environment)
		if err != nil {
			c.p.add(file, "%s: %v", where, err)
			continue
		}
		var uses []envUse
		for _, n := range slices.Sorted(maps.Keys(env)) {
			uses = append(uses, envUse{file: file, where: where, prog: prog, name: n, value: env[n]})
		}
		c.env(uses)
		if _, edge := env["NATS_HUB_URL"]; edge && prog == bridge {
			c.composeEdge(file, name, cf, env, edgeIDs)
		} else {
			c.composeNATS(file, where, cf, env)
		}
		if prog == bridge {
			c.composeBridge(file, where, svc, env)
		}
		if prog == replay {
			c.composeReplay(file, where, svc, env)
			replays = append(replays, name)
		}
	}
	c.composeOneReplay(file, cf, replays)
	if len(images) != 1 {
		c.p.add(file, "bridge and replay use different images %v: they must share the one deploy/Dockerfile builds", slices.Sorted(maps.Keys(images)))
	}
	if !slices.ContainsFunc(found[replay], func(s composeService) bool { return slices.Contains(s.Profiles, "replay") }) {
		c.p.add(file, "has no replay service under the profile \"replay\"")
	}
	if !slices.ContainsFunc(found[bridge], func(s composeService) bool { return len(s.Profiles) == 0 }) {
		c.p.add(file, "has no bridge service that starts with a plain `up` (no profile)")
	}
	c.imagesAgree(file, slices.Sorted(maps.Keys(images)))
}

// composeBridge checks the bridge service's published port and its single-node stream settings.
func (c checker) composeBridge(file, where string, svc composeService, env map[string]*string) {
	lit := map[string]string{}
	for k, v := range env {
		if v != nil {
			lit[k] = *v
		}
	}
	port := strconv.Itoa(c.bridgeListenPort(file, lit))
	if !slices.ContainsFunc(svc.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+port) }) {
		c.p.add(file, "%s does not publish the bridge's port %s", where, port)
	}
	if r, ok := lit["NATS_REPLICAS"]; ok && r != "1" {
		c.p.add(file, "%s sets NATS_REPLICAS=%s but compose runs a single NATS server", where, r)
	}
	c.streamSettings(file, where, lit)
}

// composeReplay checks a replay service: behind a profile, since it needs an API key the plain
// stack does not ask for; when continuous (--every), serving its metrics on a published port,
// restarting, pushing nowhere, and looking back further than its interval.
func (c checker) composeReplay(file, where string, svc composeService, env map[string]*string) {
	if len(svc.Profiles) == 0 {
		c.p.add(file, "%s is a replay without a profile, so a plain `up` would start it", where)
	}
	if _, continuous := flagValue(svc.Command, "every"); !continuous {
		return
	}
	c.replayWindow(file, where, svc.Command)
	if _, ok := env["REPLAY_PUSHGATEWAY_URL"]; ok {
		c.p.add(file, "%s sets REPLAY_PUSHGATEWAY_URL, which the replay refuses with --every: it is scraped instead", where)
	}
	if svc.Restart == "" || svc.Restart == "no" {
		c.p.add(file, "%s runs --every but restart is %q: a crashed replay would stay down", where, svc.Restart)
	}
	listen := env["REPLAY_METRICS_LISTEN"]
	if listen == nil {
		c.p.add(file, "%s runs --every without REPLAY_METRICS_LISTEN: nothing could scrape or alert on it", where)
		return
	}
	port, err := listenPort(*listen)
	if err != nil {
		c.p.add(file, "%s: REPLAY_METRICS_LISTEN: %v", where, err)
		return
	}
	if !slices.ContainsFunc(svc.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+strconv.Itoa(port)) }) {
		c.p.add(file, "%s does not publish its metrics port %d (REPLAY_METRICS_LISTEN)", where, port)
	}
}

// composeOneReplay checks that no profile starts a continuous replay beside another replay: two
// would read the same history and race to publish the same events.
func (c checker) composeOneReplay(file string, cf composeFile, replays []string) {
	byProfile := map[string][]string{}
	continuous := map[string]bool{}
	for _, name := range replays {
		svc := cf.Services[name]
		_, every := flagValue(svc.Command, "every")
		for _, pr := range svc.Profiles {
			byProfile[pr] = append(byProfile[pr], name)
			continuous[pr] = continuous[pr] || every
		}
	}
	for _, pr := range slices.Sorted(maps.Keys(byProfile)) {
		if names := byProfile[pr]; continuous[pr] && len(names) > 1 {
			c.p.add(file, "profile %s starts the replays %v together, one of them continuous: two replays at once", pr, names)
		}
	}
}

// replayWindow checks a continuous replay's --since against its --every: each pass must look
// back further than the time since the one before, or what arrives in between goes unread.
func (c checker) replayWindow(file, where string, args []string) {
	v, _ := flagValue(args, "every")
	every, err := time.ParseDuration(v)
	since, ok := sinceArg(args)
	if err != nil || !ok {
		return // days (30d) and absolute times are the replay's to check
	}
	if since <= every {
		c.p.add(file, "%s replays --since %s, no more than its --every %s: events between two passes would go unread", where, since, every)
	}
}

// composeNATS checks that NATS_URL names a NATS service of the stack that runs JetStream from one
// of deploy/nats' configs on a named volume.
func (c checker) composeNATS(file, where string, cf composeFile, env map[string]*string) {
	u := env["NATS_URL"]
	if u == nil {
		c.p.add(file, "%s has no NATS_URL: it would start its own embedded server", where)
		return
	}
	host, _, _ := strings.Cut(strings.TrimPrefix(*u, "nats://"), ":")
	c.composeServer(file, where, "NATS_URL "+*u, cf, host)
}

// composeServer checks that host is a service of the stack running the nats image with a
// JetStream config from deploy/nats on a named volume, and returns that config loaded; nil when
// there is none to load. what is the setting that names host, for the report.
func (c checker) composeServer(file, where, what string, cf composeFile, host string) *server.Options {
	nats, ok := cf.Services[host]
	if !ok || !strings.HasPrefix(nats.Image, "nats:") {
		c.p.add(file, "%s: %s names no service running the nats image", where, what)
		return nil
	}
	conf := ""
	for _, v := range nats.Volumes {
		src, dst, _ := strings.Cut(v, ":")
		if strings.HasPrefix(src, "./nats/") && slices.Contains(nats.Command, strings.TrimSuffix(dst, ":ro")) {
			conf = strings.TrimPrefix(src, "./")
		}
	}
	text, ok := c.d.natsConfs[conf]
	if !ok || !strings.Contains(text, "jetstream") {
		c.p.add(file, "service %s does not run with a JetStream config from deploy/nats (command %v, volumes %v)", host, nats.Command, nats.Volumes)
	}
	if !slices.ContainsFunc(nats.Volumes, func(v string) bool {
		src, _, _ := strings.Cut(v, ":")
		_, named := cf.Volumes[src]
		return named
	}) {
		c.p.add(file, "service %s keeps JetStream on no named volume", host)
	}
	if !ok {
		return nil
	}
	opts := &server.Options{}
	if err := opts.ProcessConfigString(text); err != nil {
		return nil // reported by the NATS config check
	}
	return opts
}

// composeEdge checks an edge bridge (NATS_HUB_URL): behind a profile with the hub it dials, which
// takes leaf connections on the URL's port in the domain the edge looks for; an id of its own; its
// store on a named volume no other service mounts. ids collects the edges' ids.
func (c checker) composeEdge(file, name string, cf composeFile, env map[string]*string, ids map[string]string) {
	where := "service " + name
	svc := cf.Services[name]
	lit := map[string]string{}
	for k, v := range env {
		if v != nil {
			lit[k] = *v
		}
	}
	if _, ok := env["NATS_URL"]; ok {
		c.p.add(file, "%s sets both NATS_URL and NATS_HUB_URL, which the bridge refuses: an edge runs its own server", where)
	}
	if len(svc.Profiles) == 0 {
		c.p.add(file, "%s is an edge without a profile, so a plain `up` would start it", where)
	}
	if raw, ok := lit["NATS_HUB_URL"]; ok {
		urls, err := publish.ParseHubURLs(strings.Split(raw, ","))
		if err != nil {
			c.p.add(file, "%s: NATS_HUB_URL: %v", where, err)
		}
		for _, u := range urls {
			what := "NATS_HUB_URL " + u.String()
			host, port := u.Hostname(), u.Port()
			if port == "" {
				port = leafPort
			}
			opts := c.composeServer(file, where, what, cf, host)
			if opts == nil {
				continue
			}
			switch {
			case opts.LeafNode.Port == 0:
				c.p.add(file, "%s: %s: service %s takes no leaf connections (its config has no leafnodes port)", where, what, host)
			case strconv.Itoa(opts.LeafNode.Port) != port:
				c.p.add(file, "%s: %s: service %s takes leaf connections on port %d", where, what, host, opts.LeafNode.Port)
			}
			if d := c.hubDomain(lit); opts.JetStreamDomain != d {
				c.p.add(file, "%s looks for the hub's JetStream in domain %q (NATS_HUB_DOMAIN), service %s runs domain %q", where, d, host, opts.JetStreamDomain)
			}
			hub := cf.Services[host]
			if len(hub.Profiles) == 0 {
				c.p.add(file, "service %s, the hub of %s, has no profile, so a plain `up` would start it", host, name)
			}
			for _, p := range svc.Profiles {
				if len(hub.Profiles) > 0 && !slices.Contains(hub.Profiles, p) {
					c.p.add(file, "%s is under the profile %s and its hub %s is not: `--profile %s up` would start the edge alone", where, p, host, p)
				}
			}
		}
	}
	if id, ok := lit["NATS_EDGE_ID"]; !ok {
		c.p.add(file, "%s has no NATS_EDGE_ID: it would take the container's host name, which changes when compose recreates it and strands the backlog under the old id", where)
	} else if other, dup := ids[id]; dup {
		c.p.add(file, "%s has the NATS_EDGE_ID %s of service %s: the two would write one stream at the hub", where, id, other)
	} else {
		ids[id] = name
	}
	dir := c.storeDir(lit)
	store := ""
	for _, v := range svc.Volumes {
		parts := strings.Split(v, ":")
		if _, named := cf.Volumes[parts[0]]; named && len(parts) > 1 && path.Clean(parts[1]) == dir && !slices.Contains(parts[2:], "ro") {
			store = parts[0]
		}
	}
	if store == "" {
		c.p.add(file, "%s keeps its store %s on no writable named volume: the backlog would go with the container", where, dir)
		return
	}
	for _, other := range slices.Sorted(maps.Keys(cf.Services)) {
		if other != name && slices.ContainsFunc(cf.Services[other].Volumes, func(v string) bool { return strings.HasPrefix(v, store+":") }) {
			c.p.add(file, "%s shares its store volume %s with service %s: one store takes one server", where, store, other)
		}
	}
}

// streamSettings checks a command's stream settings against deploy/nats/stream.json.
func (c checker) streamSettings(file, where string, env map[string]string) {
	for name, want := range c.d.streams {
		if s, ok := env["NATS_STREAM"]; ok && s != want.Name {
			c.p.add(file, "%s sets NATS_STREAM=%s, %s defines %s", where, s, name, want.Name)
		}
		if d := c.dedupWindow(env); d != want.Duplicates {
			c.p.add(file, "%s has a dedup window of %s, %s one of %s", where, d, name, want.Duplicates)
		}
	}
}

// kubernetes checks the manifests: every container's variables and references, security
// context, resources; the bridge Deployment's replicas and probes; edge StatefulSets; PDB and
// Service; one image; a kustomization that covers the hub-side files; replays that look back no
// further than the dedup window, the continuous one alone in its Deployment; every pod the alerts
// watch scraped in its job.
func (c checker) kubernetes() {
	objs := c.d.objects
	refs := map[string]map[string]bool{} // "ConfigMap/name" -> keys
	for _, o := range objs {
		if o.Kind != "ConfigMap" && o.Kind != "Secret" {
			continue
		}
		keys := map[string]bool{}
		for _, m := range []map[string]string{o.Data, o.StringData} {
			for k := range m {
				keys[k] = false
			}
		}
		refs[o.Kind+"/"+o.name()] = keys
	}
	images := map[string]bool{}
	var bridgeEnv map[string]string
	var dedup time.Duration
	edgeFiles := map[string]bool{} // by base name
	type since struct {
		file, where string
		d           time.Duration
	}
	var sinces []since
	for _, pd := range pods(objs) {
		c.podSecurity(pd)
		for _, ctr := range pd.spec.Containers {
			where := fmt.Sprintf("%s %s container %s", pd.obj.Kind, pd.obj.name(), ctr.Name)
			images[ctr.Image] = true
			if len(ctr.Resources["requests"].Content) == 0 || len(ctr.Resources["limits"].Content) == 0 {
				c.p.add(pd.obj.file, "%s has no resource requests and limits", where)
			}
			prog, ok := c.program(pd.obj.file, where, ctr.Command)
			if !ok {
				continue
			}
			uses, lit := c.containerEnv(pd.obj.file, where, prog, ctr, refs)
			c.env(uses)
			switch prog {
			case bridge:
				if slices.ContainsFunc(uses, func(u envUse) bool { return u.name == "NATS_HUB_URL" }) {
					c.edgePod(pd, ctr, where, uses, lit)
					edgeFiles[path.Base(pd.obj.file)] = true
					continue
				}
				c.bridgePod(pd, ctr, where, lit)
				bridgeEnv, dedup = lit, c.dedupWindow(lit)
			case replay:
				if d, ok := sinceArg(ctr.Args); ok {
					sinces = append(sinces, since{pd.obj.file, where, d})
				} else {
					c.p.add(pd.obj.file, "%s has no --since duration among its args %v", where, ctr.Args)
				}
				c.replayPod(pd, ctr, where, uses, lit)
			}
		}
	}
	for _, s := range sinces {
		if dedup > 0 && s.d > dedup {
			c.p.add(s.file, "%s replays %s back, beyond the dedup window %s: older events would be stored twice", s.where, s.d, dedup)
		}
	}
	for ref, keys := range refs {
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			if !keys[k] {
				c.p.add("kubernetes", "%s key %s is used by no container", ref, k)
			}
		}
	}
	if bridgeEnv == nil {
		c.p.add("kubernetes", "no Deployment runs the bridge")
	} else {
		c.streamSettings("kubernetes", "the bridge Deployment", bridgeEnv)
		for name, s := range c.d.streams {
			if r := bridgeEnv["NATS_REPLICAS"]; r != strconv.Itoa(s.Replicas) {
				c.p.add("kubernetes", "the bridge Deployment sets NATS_REPLICAS=%q, %s has %d replicas", r, name, s.Replicas)
			}
		}
	}
	c.pdbAndService(objs)
	c.kustomization(objs, slices.Sorted(maps.Keys(images)), edgeFiles)
	c.imagesAgree("kubernetes", slices.Sorted(maps.Keys(images)))
}

// containerEnv returns the variables a container gets from env and envFrom, marks the ConfigMap and
// Secret keys it uses, and returns the literal values it gets.
func (c checker) containerEnv(file, where string, prog program, ctr container, refs map[string]map[string]bool) ([]envUse, map[string]string) {
	var uses []envUse
	lit := map[string]string{}
	objectOf := func(ref string) (map[string]string, bool) {
		kind, name, _ := strings.Cut(ref, "/")
		for _, o := range c.d.objects {
			if o.Kind == kind && o.name() == name {
				m := map[string]string{}
				for k, v := range o.StringData {
					m[k] = v
				}
				for k, v := range o.Data {
					m[k] = v
				}
				return m, true
			}
		}
		c.p.add(file, "%s refers to %s, which no manifest under deploy/kubernetes defines", where, ref)
		return nil, false
	}
	for _, ef := range ctr.EnvFrom {
		ref := ""
		switch {
		case ef.ConfigMapRef != nil:
			ref = "ConfigMap/" + ef.ConfigMapRef.Name
		case ef.SecretRef != nil:
			ref = "Secret/" + ef.SecretRef.Name
		}
		data, ok := objectOf(ref)
		if !ok {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(data)) {
			refs[ref][k] = true
			v := data[k]
			uses = append(uses, envUse{file: file, where: where + " (envFrom " + ref + ")", prog: prog, name: ef.Prefix + k, value: &v})
			lit[ef.Prefix+k] = v
		}
	}
	for _, e := range ctr.Env {
		u := envUse{file: file, where: where, prog: prog, name: e.Name}
		if e.ValueFrom == nil {
			v := e.Value
			u.value = &v
			lit[e.Name] = v
			uses = append(uses, u)
			continue
		}
		if e.ValueFrom.FieldRef != nil {
			uses = append(uses, u)
			continue
		}
		ref, kr := "", e.ValueFrom.SecretKeyRef
		if kr != nil {
			ref = "Secret/" + kr.Name
		} else if kr = e.ValueFrom.ConfigMapKeyRef; kr != nil {
			ref = "ConfigMap/" + kr.Name
		}
		if kr == nil {
			c.p.add(file, "%s: %s takes its value from neither a Secret nor a ConfigMap key nor a field", where, e.Name)
			continue
		}
		if data, ok := objectOf(ref); ok {
			if _, has := data[kr.Key]; !has && !kr.Optional {
				c.p.add(file, "%s: %s refers to key %s, which %s does not have", where, e.Name, kr.Key, ref)
			}
			if _, has := data[kr.Key]; has {
				refs[ref][kr.Key] = true
			}
			if !c.code.anyKnows(kr.Key) {
				c.p.add(file, "%s key %s is no variable any command reads", ref, kr.Key)
			}
		}
		uses = append(uses, u)
	}
	return uses, lit
}

// podSecurity checks that a pod cannot run as root, write its root filesystem or gain privileges.
func (c checker) podSecurity(pd pod) {
	podSC := pd.spec.SecurityContext
	for _, ctr := range pd.spec.Containers {
		where := fmt.Sprintf("%s %s container %s", pd.obj.Kind, pd.obj.name(), ctr.Name)
		sc := ctr.SecurityContext
		if sc == nil {
			sc = &securityContext{}
		}
		nonRoot := sc.RunAsNonRoot
		if nonRoot == nil && podSC != nil {
			nonRoot = podSC.RunAsNonRoot
		}
		checks := []struct {
			ok   bool
			what string
		}{
			{nonRoot != nil && *nonRoot, "runAsNonRoot: true"},
			{sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, "readOnlyRootFilesystem: true"},
			{sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, "allowPrivilegeEscalation: false"},
			{sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, "ALL"), "capabilities.drop: [ALL]"},
		}
		for _, ch := range checks {
			if !ch.ok {
				c.p.add(pd.obj.file, "%s securityContext lacks %s", where, ch.what)
			}
		}
	}
}

// bridgePod checks the bridge Deployment: replicas, and probes on the port the bridge listens on.
func (c checker) bridgePod(pd pod, ctr container, where string, env map[string]string) {
	file := pd.obj.file
	if pd.obj.Kind != "Deployment" {
		c.p.add(file, "%s runs the bridge outside a Deployment", where)
		return
	}
	if r := pd.obj.Spec.Replicas; r == nil || *r < 2 {
		c.p.add(file, "%s: the Deployment must run at least 2 replicas", where)
	}
	c.probes(file, where, ctr, env)
	c.reloadedFiles(pd, ctr, where, env)
	c.scrapeTarget(pd, ctr, where, c.bridgeListenPort(file, env), bridgeJob)
}

// replayPod checks a replay container: in a Job or CronJob one pass that ends; in a Deployment
// the continuous replay (--every), alone even during a rollout, pushing nowhere, looking back
// further than its interval, and serving /metrics and /healthz where its annotations and liveness
// probe ask.
func (c checker) replayPod(pd pod, ctr container, where string, uses []envUse, env map[string]string) {
	file := pd.obj.file
	every, continuous := flagValue(ctr.Args, "every")
	if pd.obj.Kind != "Deployment" {
		if continuous {
			c.p.add(file, "%s runs --every %s in a %s, which would then never complete", where, every, pd.obj.Kind)
		}
		return
	}
	if !continuous {
		c.p.add(file, "%s runs one pass in a Deployment, which would restart it for ever: add --every", where)
		return
	}
	c.replayWindow(file, where, ctr.Args)
	if r := pd.obj.Spec.Replicas; r == nil || *r != 1 {
		c.p.add(file, "%s: the continuous replay must run exactly 1 replica", where)
	}
	if st := pd.obj.Spec.Strategy; st == nil || st.Type != "Recreate" {
		c.p.add(file, "%s: the Deployment's strategy must be Recreate, or a rollout runs two replays at once", where)
	}
	if slices.ContainsFunc(uses, func(u envUse) bool { return u.name == "REPLAY_PUSHGATEWAY_URL" }) {
		c.p.add(file, "%s sets REPLAY_PUSHGATEWAY_URL, which the replay refuses with --every: it is scraped instead", where)
	}
	listen, ok := env["REPLAY_METRICS_LISTEN"]
	if !ok {
		c.p.add(file, "%s runs --every without REPLAY_METRICS_LISTEN: nothing could scrape or alert on it", where)
		return
	}
	port, err := listenPort(listen)
	if err != nil {
		c.p.add(file, "%s: REPLAY_METRICS_LISTEN: %v", where, err)
		return
	}
	if pr := ctr.LivenessProbe; pr == nil || pr.HTTPGet == nil {
		c.p.add(file, "%s has no HTTP livenessProbe", where)
	} else {
		if pr.HTTPGet.Path != healthPath {
			c.p.add(file, "%s livenessProbe asks %s, want %s", where, pr.HTTPGet.Path, healthPath)
		}
		if p := containerPortOf(ctr, pr.HTTPGet.Port); p != port {
			c.p.add(file, "%s livenessProbe asks port %s (%d), but the replay serves %s on %d (REPLAY_METRICS_LISTEN)", where, pr.HTTPGet.Port, p, healthPath, port)
		}
	}
	c.scrapeTarget(pd, ctr, where, port, replayJob)
}

// scrapeTarget checks that Prometheus scrapes a pod as job: its prometheus.io annotations ask for
// /metrics on port, a port its container declares, and prometheus.yml's relabelling keeps the pod
// in that job and no other.
func (c checker) scrapeTarget(pd pod, ctr container, where string, port int, job string) {
	file := pd.obj.file
	a := pd.meta.Annotations
	if a["prometheus.io/scrape"] != "true" {
		c.p.add(file, "%s has no annotation prometheus.io/scrape: \"true\", so the alerts see nothing of it", where)
		return
	}
	if a["prometheus.io/port"] != strconv.Itoa(port) {
		c.p.add(file, "%s: the annotation prometheus.io/port is %q, but it serves %s on %d", where, a["prometheus.io/port"], metricsPath, port)
	}
	if a["prometheus.io/path"] != metricsPath {
		c.p.add(file, "%s: the annotation prometheus.io/path is %q, want %s", where, a["prometheus.io/path"], metricsPath)
	}
	if !slices.ContainsFunc(ctr.Ports, func(p containerPort) bool { return p.ContainerPort == port }) {
		c.p.add(file, "%s declares no container port %d, where it serves %s", where, port, metricsPath)
	}
	for _, cf := range slices.Sorted(maps.Keys(c.d.prometheus)) {
		var jobs []string
		for _, sc := range c.d.prometheus[cf].ScrapeConfigs {
			if sc.keeps(podMetaLabels(pd)) {
				jobs = append(jobs, sc.JobName)
			}
		}
		if !slices.Equal(jobs, []string{job}) {
			c.p.add(cf, "scrapes the pods of %s %s as jobs %v, want [%s], where alerts.yaml looks for them", pd.obj.Kind, pd.obj.name(), jobs, job)
		}
	}
}

// edgePod checks an edge (NATS_HUB_URL): a StatefulSet whose every pod is an edge of its own, its
// id from the pod's name and its store on its own claim; a headless Service for serviceName; the
// hub stream it may create as stream.json defines it; probes as the bridge's.
func (c checker) edgePod(pd pod, ctr container, where string, uses []envUse, env map[string]string) {
	file := pd.obj.file
	if pd.obj.Kind != "StatefulSet" {
		c.p.add(file, "%s runs an edge outside a StatefulSet: each edge needs an id and a volume that stay its own", where)
		return
	}
	if slices.ContainsFunc(uses, func(u envUse) bool { return u.name == "NATS_URL" }) {
		c.p.add(file, "%s sets both NATS_URL and NATS_HUB_URL, which the bridge refuses: an edge runs its own server", where)
	}
	if v, ok := env["NATS_HUB_URL"]; ok {
		if _, err := publish.ParseHubURLs(strings.Split(v, ",")); err != nil {
			c.p.add(file, "%s: NATS_HUB_URL: %v", where, err)
		}
	}
	if d := c.hubDomain(env); !slices.Contains(c.hubDomains(), d) {
		c.p.add(file, "%s looks for the hub's JetStream in domain %q (NATS_HUB_DOMAIN), which no hub config in deploy/nats runs (%v)", where, d, c.hubDomains())
	}
	byPod := slices.ContainsFunc(ctr.Env, func(e envVar) bool {
		return e.Name == "NATS_EDGE_ID" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	})
	if _, fixed := env["NATS_EDGE_ID"]; fixed || !byPod {
		c.p.add(file, "%s does not take NATS_EDGE_ID from the pod's name (fieldRef metadata.name): replicas would share an id", where)
	}
	dir := c.storeDir(env)
	claimed := slices.ContainsFunc(ctr.VolumeMounts, func(m volumeMount) bool {
		return path.Clean(m.MountPath) == dir && !m.ReadOnly && slices.ContainsFunc(pd.obj.Spec.VolumeClaimTemplates, func(t claimTemplate) bool {
			return t.Metadata.Name == m.Name
		})
	})
	if !claimed {
		c.p.add(file, "%s keeps its store %s on no volumeClaimTemplate: the backlog would go with the pod", where, dir)
	}
	if sc := pd.spec.SecurityContext; sc == nil || sc.FSGroup == nil {
		c.p.add(file, "%s: the pod has no securityContext.fsGroup, so the non-root bridge may not write its volume", where)
	}
	headless := slices.ContainsFunc(c.d.objects, func(o k8sObject) bool {
		return o.Kind == "Service" && o.name() == pd.obj.Spec.ServiceName && o.Spec.ClusterIP == "None" && containsAll(pd.meta.Labels, stringMap(o.Spec.Selector))
	})
	if !headless {
		c.p.add(file, "%s: serviceName %q names no headless Service that selects its pods", where, pd.obj.Spec.ServiceName)
	}
	c.streamSettings(file, where, env)
	for name, s := range c.d.streams {
		if r := env["NATS_REPLICAS"]; r != strconv.Itoa(s.Replicas) {
			c.p.add(file, "%s sets NATS_REPLICAS=%q for the hub stream it creates when missing, %s has %d replicas", where, r, name, s.Replicas)
		}
	}
	c.probes(file, where, ctr, env)
	c.reloadedFiles(pd, ctr, where, env)
	c.scrapeTarget(pd, ctr, where, c.bridgeListenPort(file, env), bridgeJob)
}

// reloadedFiles checks the files a bridge rereads while it runs: the profile secrets directory
// (AYRSHARE_PROFILE_SECRETS_DIR) and the certificate pair (BRIDGE_TLS_CERT_FILE, _KEY_FILE). Each
// must be the mount point of a Secret volume, mounted whole: kubelet never updates a subPath
// mount, so a rotated secret or a renewed certificate would not reach the bridge. The non-root
// bridge must be able to read the files: a defaultMode without read for others needs the pod's
// fsGroup, which kubelet gives the files with read for the group.
func (c checker) reloadedFiles(pd pod, ctr container, where string, env map[string]string) {
	file := pd.obj.file
	for _, v := range []struct {
		name string
		dir  func(string) string
	}{
		{"AYRSHARE_PROFILE_SECRETS_DIR", path.Clean},
		{"BRIDGE_TLS_CERT_FILE", path.Dir},
		{"BRIDGE_TLS_KEY_FILE", path.Dir},
	} {
		value, ok := env[v.name]
		if !ok || value == "" {
			continue
		}
		dir := v.dir(value)
		i := slices.IndexFunc(ctr.VolumeMounts, func(m volumeMount) bool { return path.Clean(m.MountPath) == dir })
		if i < 0 {
			c.p.add(file, "%s sets %s=%s, but mounts no volume at %s", where, v.name, value, dir)
			continue
		}
		m := ctr.VolumeMounts[i]
		if m.SubPath != "" {
			c.p.add(file, "%s mounts %s at %s with subPath %s, which kubelet never updates: the bridge would not see a change to %s", where, m.Name, m.MountPath, m.SubPath, v.name)
		}
		j := slices.IndexFunc(pd.spec.Volumes, func(pv podVolume) bool { return pv.Name == m.Name })
		if j < 0 || pd.spec.Volumes[j].Secret == nil {
			c.p.add(file, "%s mounts %s at %s (%s), which is no Secret volume of the pod", where, m.Name, m.MountPath, v.name)
			continue
		}
		sec := pd.spec.Volumes[j].Secret
		mode := 0o644 // Kubernetes' default
		if sec.DefaultMode != nil {
			mode = *sec.DefaultMode
		}
		if sc := pd.spec.SecurityContext; mode&0o004 == 0 && (sc == nil || sc.FSGroup == nil) {
			c.p.add(file, "%s: volume %s has defaultMode %#o and the pod no securityContext.fsGroup, so its files stay root's and the non-root bridge cannot read %s", where, m.Name, mode, v.name)
		}
	}
}

// probes checks a bridge container's liveness and readiness probes: the paths the bridge serves,
// on the port it listens on, over HTTPS when it serves TLS.
func (c checker) probes(file, where string, ctr container, env map[string]string) {
	listen := c.bridgeListenPort(file, env)
	for _, pr := range []struct {
		name, path string
		probe      *probe
	}{{"livenessProbe", healthPath, ctr.LivenessProbe}, {"readinessProbe", readyPath, ctr.ReadinessProbe}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			c.p.add(file, "%s has no HTTP %s", where, pr.name)
			continue
		}
		if pr.probe.HTTPGet.Path != pr.path {
			c.p.add(file, "%s %s asks %s, want %s", where, pr.name, pr.probe.HTTPGet.Path, pr.path)
		}
		if port := containerPortOf(ctr, pr.probe.HTTPGet.Port); port != listen {
			c.p.add(file, "%s %s asks port %s (%d), but the bridge listens on %d", where, pr.name, pr.probe.HTTPGet.Port, port, listen)
		}
		scheme, want := pr.probe.HTTPGet.Scheme, "HTTP"
		if scheme == "" {
			scheme = "HTTP"
		}
		if env["BRIDGE_TLS_CERT_FILE"] != "" {
			want = "HTTPS" // the bridge serves only HTTPS on BRIDGE_LISTEN then
		}
		if scheme != want {
			c.p.add(file, "%s %s asks with scheme %s, but the bridge serves %s (BRIDGE_TLS_CERT_FILE %q)", where, pr.name, scheme, want, env["BRIDGE_TLS_CERT_FILE"])
		}
	}
}

// containerPortOf resolves a port number or name of ctr; 0 when it names no port.
func containerPortOf(ctr container, p intOrString) int {
	if n, err := strconv.Atoi(string(p)); err == nil {
		return n
	}
	for _, cp := range ctr.Ports {
		if cp.Name == string(p) {
			return cp.ContainerPort
		}
	}
	return 0
}

// pdbAndService checks that a PodDisruptionBudget and a Service select the bridge's pods, and the
// Service sends traffic to the bridge's port.
func (c checker) pdbAndService(objs []k8sObject) {
	var bridgePods []pod
	runsBridge := func(ctr container) bool { return len(ctr.Command) == 0 || path.Base(ctr.Command[0]) == string(bridge) }
	for _, pd := range pods(objs) {
		if pd.obj.Kind == "Deployment" && slices.ContainsFunc(pd.spec.Containers, runsBridge) {
			bridgePods = append(bridgePods, pd)
		}
	}
	for _, kind := range []string{"PodDisruptionBudget", "Service"} {
		found := false
		for _, o := range objs {
			if o.Kind != kind {
				continue
			}
			sel := stringMap(o.Spec.Selector)
			if kind == "PodDisruptionBudget" {
				sel = stringMap(o.Spec.Selector["matchLabels"])
			}
			for _, pd := range bridgePods {
				if !containsAll(pd.meta.Labels, sel) {
					continue
				}
				found = true
				for _, sp := range o.Spec.Ports {
					if containerPortOf(pd.spec.Containers[0], sp.TargetPort) != c.bridgeListenPort(o.file, nil) {
						c.p.add(o.file, "Service %s port %s does not reach the bridge's port", o.name(), sp.Name)
					}
				}
			}
		}
		if !found {
			c.p.add("kubernetes", "no %s selects the bridge Deployment's pods", kind)
		}
	}
}

// kustomization checks that kustomization.yaml lists every manifest meant for `kubectl apply`
// (those with a fixed name; generateName ones are for `kubectl create`) and pins the image. It is
// the hub-side stack: edge manifests (edges, by base name) run at other sites, applied on their
// own, and must stay out of it.
func (c checker) kustomization(objs []k8sObject, images []string, edges map[string]bool) {
	const file = "kubernetes/kustomization.yaml"
	var k *k8sObject
	applied := map[string]bool{}
	for i, o := range objs {
		switch {
		case o.Kind == "Kustomization":
			k = &objs[i]
		case o.Metadata.Name != "" && !edges[path.Base(o.file)]:
			applied[path.Base(o.file)] = true
		}
	}
	if k == nil {
		c.p.add(file, "missing")
		return
	}
	for _, r := range k.Resources {
		if edges[r] {
			c.p.add(file, "lists %s, an edge: applying the hub-side stack would start an edge beside the bridge", r)
			continue
		}
		if !applied[r] {
			c.p.add(file, "resource %s is no manifest under deploy/kubernetes with a fixed name", r)
		}
		delete(applied, r)
	}
	for _, f := range slices.Sorted(maps.Keys(applied)) {
		c.p.add(file, "does not list %s", f)
	}
	for _, img := range images {
		repo, tag := imageRepo(img)
		if !slices.ContainsFunc(k.Images, func(i k8sImage) bool { return i.Name == repo && i.NewName == "" && i.NewTag == tag }) {
			c.p.add(file, "images does not pin %s to the tag %s the manifests use", repo, tag)
		}
	}
}

// imagesAgree checks that one file uses a single image, of the repository the others use.
func (c checker) imagesAgree(file string, images []string) {
	repos := map[string]bool{}
	for _, img := range images {
		repo, _ := imageRepo(img)
		repos[repo] = true
	}
	if len(repos) != 1 {
		c.p.add(file, "uses images from %v, want one repository for bridge and replay", slices.Sorted(maps.Keys(repos)))
		return
	}
	for _, other := range [][]string{c.composeImages(), c.kubernetesImages()} {
		for _, img := range other {
			if repo, _ := imageRepo(img); !repos[repo] {
				c.p.add(file, "uses %v, elsewhere the image is %s", slices.Sorted(maps.Keys(repos)), repo)
			}
		}
	}
}

func (c checker) composeImages() []string {
	var out []string
	for _, svc := range c.d.compose.Services {
		if !strings.HasPrefix(svc.Image, "nats:") {
			out = append(out, svc.Image)
		}
	}
	return out
}

func (c checker) kubernetesImages() []string {
	var out []string
	for _, pd := range pods(c.d.objects) {
		for _, ctr := range pd.spec.Containers {
			out = append(out, ctr.Image)
		}
	}
	return out
}

// streams checks deploy/nats/stream.json against the stream the bridge creates by default.
func (c checker) streams() {
	if len(c.d.streams) == 0 {
		c.p.add("nats/stream.json", "missing")
	}
	for file, s := range c.d.streams {
		dedup, _ := time.ParseDuration(c.code.def("NATS_DEDUP_WINDOW"))
		maxAge, _ := time.ParseDuration(c.code.def("NATS_MAX_AGE"))
		checks := []struct {
			ok         bool
			field      string
			have, want any
		}{
			{s.Name == c.code.def("NATS_STREAM"), "name", s.Name, c.code.def("NATS_STREAM")},
			{slices.Equal(s.Subjects, []string{schema.StreamSubjects}), "subjects", s.Subjects, []string{schema.StreamSubjects}},
			{s.Storage == jetstream.FileStorage, "storage", s.Storage, jetstream.FileStorage},
			{s.Retention == jetstream.LimitsPolicy, "retention", s.Retention, jetstream.LimitsPolicy},
			{s.Discard == jetstream.DiscardOld, "discard", s.Discard, jetstream.DiscardOld},
			{s.Duplicates == dedup, "duplicate_window", s.Duplicates, dedup},
			{s.MaxAge == maxAge, "max_age", s.MaxAge, maxAge},
			{s.Replicas == clusterNodes, "num_replicas", s.Replicas, clusterNodes},
		}
		for _, ch := range checks {
			if !ch.ok {
				c.p.add(file, "%s is %v, the bridge creates %v", ch.field, ch.have, ch.want)
			}
		}
	}
}

// natsConfs checks the NATS server configs: each parses, runs JetStream with a store and takes
// the bridge's largest message; the cluster one makes each of its nodes a distinct member of a
// named cluster with routes to all; one is a hub, whose leaf connections come in the JetStream
// domain edges look for by default.
func (c checker) natsConfs() {
	maxBody, _ := strconv.ParseInt(c.code.def("BRIDGE_MAX_BODY_BYTES"), 10, 64)
	need := max(maxBody+64<<10, 1<<20) // what the bridge asks of max_payload (cmd/bridge maxPayload)
	clusters, hubs := 0, 0
	hubDomain := c.code.def("NATS_HUB_DOMAIN")
	for _, file := range slices.Sorted(maps.Keys(c.d.natsConfs)) {
		text := c.d.natsConfs[file]
		nodes := []string{""}
		if strings.Contains(text, "$SERVER_NAME") {
			nodes = []string{"nats-0", "nats-1", "nats-2"}
		}
		names := map[string]bool{}
		for _, node := range nodes {
			prefix := ""
			if node != "" {
				prefix = fmt.Sprintf("SERVER_NAME: %q\n", node)
			}
			opts := &server.Options{}
			if err := opts.ProcessConfigString(prefix + text); err != nil {
				c.p.add(file, "does not load in nats-server: %v", err)
				break
			}
			if !opts.JetStream || opts.StoreDir == "" {
				c.p.add(file, "does not enable JetStream with a store_dir")
			}
			if int64(opts.MaxPayload) < need {
				c.p.add(file, "max_payload %d is below the %d bytes the bridge's largest message needs", opts.MaxPayload, need)
			}
			if opts.Port != natsClientPort {
				c.p.add(file, "clients port is %d, want %d", opts.Port, natsClientPort)
			}
			names[opts.ServerName] = true
			if opts.LeafNode.Port != 0 {
				if node == nodes[0] {
					hubs++
				}
				switch opts.JetStreamDomain {
				case hubDomain:
				case "":
					c.p.add(file, "takes leaf connections but has no jetstream domain: edges look for their hub in %q (NATS_HUB_DOMAIN's default)", hubDomain)
				default:
					c.p.add(file, "takes leaf connections with the jetstream domain %q, but edges look for their hub in %q (NATS_HUB_DOMAIN's default)", opts.JetStreamDomain, hubDomain)
				}
			}
			if opts.Cluster.Port == 0 {
				continue
			}
			if node != "" {
				clusters++
			}
			if opts.Cluster.Name == "" || len(opts.Routes) != clusterNodes || opts.ServerName != node {
				c.p.add(file, "node %s: want a named cluster with %d routes and server_name from $SERVER_NAME, have name %q, %d routes, server_name %q",
					node, clusterNodes, opts.Cluster.Name, len(opts.Routes), opts.ServerName)
			}
		}
		if len(names) != len(nodes) {
			c.p.add(file, "its nodes do not get distinct server names: %v", slices.Sorted(maps.Keys(names)))
		}
	}
	if clusters != clusterNodes {
		c.p.add("nats", "no config runs a %d-node cluster with server_name from $SERVER_NAME", clusterNodes)
	}
	if hubs == 0 {
		c.p.add("nats", "no config is a hub for edges: a leafnodes block and the jetstream domain %q", hubDomain)
	}
}

// hubDomains are the JetStream domains of the deploy/nats configs that take leaf connections.
func (c checker) hubDomains() []string {
	var out []string
	for _, file := range slices.Sorted(maps.Keys(c.d.natsConfs)) {
		text := c.d.natsConfs[file]
		if strings.Contains(text, "$SERVER_NAME") {
			text = "SERVER_NAME: \"nats-0\"\n" + text
		}
		opts := &server.Options{}
		if opts.ProcessConfigString(text) == nil && opts.LeafNode.Port != 0 && !slices.Contains(out, opts.JetStreamDomain) {
			out = append(out, opts.JetStreamDomain)
		}
	}
	return out
}

// dashboards checks that the Grafana dashboards query only metrics the bridge and the replay
// serve, and all of them.
func (c checker) dashboards() {
	known := knownMetrics()
	metricRE := regexp.MustCompile(`\bayrbridge_[a-z0-9_]+`)
	for _, file := range slices.Sorted(maps.Keys(c.d.dashboards)) {
		used := map[string]bool{}
		for _, expr := range exprs(c.d.dashboards[file]) {
			for _, m := range metricRE.FindAllString(expr, -1) {
				base, ok := servedMetric(known, m)
				if !ok {
					c.p.add(file, "queries %s, which no ayrbridge program serves (%s)", m, expr)
					continue
				}
				used[base] = true
			}
		}
		for _, m := range slices.Sorted(maps.Keys(known)) {
			if !used[m] {
				c.p.add(file, "shows nothing of %s", m)
			}
		}
	}
}

// exprs returns every "expr" string in a decoded JSON document.
func exprs(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if s, ok := v[k].(string); ok && k == "expr" {
				out = append(out, s)
				continue
			}
			out = append(out, exprs(v[k])...)
		}
	case []any:
		for _, e := range v {
			out = append(out, exprs(e)...)
		}
	}
	return out
}

// prometheusConfig checks the Prometheus configuration: it loads every rule file, and keeps the
// labels that the Pushgateway serves, so that the nightly replay's series keep the job they were
// pushed as. Which pods its jobs scrape is scrapeTarget's to check.
func (c checker) prometheusConfig() {
	for _, file := range slices.Sorted(maps.Keys(c.d.prometheus)) {
		pc := c.d.prometheus[file]
		loaded := map[string]bool{}
		for _, rf := range pc.RuleFiles {
			name := path.Join(path.Dir(file), rf)
			if _, ok := c.d.rules[name]; !ok {
				c.p.add(file, "loads the rule file %s, which is not deploy/prometheus/alerts.yaml", rf)
			}
			loaded[name] = true
		}
		for _, rf := range slices.Sorted(maps.Keys(c.d.rules)) {
			if !loaded[rf] {
				c.p.add(file, "does not load %s (rule_files)", rf)
			}
		}
		jobs := map[string]bool{}
		for _, sc := range pc.ScrapeConfigs {
			if jobs[sc.JobName] {
				c.p.add(file, "has two scrape jobs named %s", sc.JobName)
			}
			jobs[sc.JobName] = true
		}
		if !slices.ContainsFunc(pc.ScrapeConfigs, func(sc scrapeConfig) bool { return sc.HonorLabels && len(sc.StaticConfigs) > 0 }) {
			c.p.add(file, "has no static job with honor_labels: true for the Pushgateway: the nightly replay's series would take the scrape job's name")
		}
	}
}

// rules checks the alert rules: each alert has a severity, a summary and a description, queries
// only metrics the programs serve (and up and process_start_time_seconds) in jobs prometheus.yml
// scrapes, and has a test in alerts_test.yaml where it fires and one where it stays quiet.
func (c checker) rules() {
	known := knownMetrics()
	jobRE := regexp.MustCompile(`\bjob\s*=\s*"([^"]*)"`)
	jobs := map[string]bool{}
	for _, pc := range c.d.prometheus {
		for _, sc := range pc.ScrapeConfigs {
			jobs[sc.JobName] = true
		}
	}
	recorded := map[string]bool{}
	for _, rf := range c.d.rules {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					recorded[r.Record] = true
				}
			}
		}
	}
	alerts := map[string]string{} // alert -> file
	for _, file := range slices.Sorted(maps.Keys(c.d.rules)) {
		for _, g := range c.d.rules[file].Groups {
			for _, r := range g.Rules {
				where := "recording rule " + r.Record
				if r.Alert != "" {
					where = "alert " + r.Alert
					if _, dup := alerts[r.Alert]; dup {
						c.p.add(file, "defines %s twice", where)
					}
					alerts[r.Alert] = file
					c.alertText(file, where, r)
				}
				for _, m := range promqlMetrics(r.Expr) {
					_, served := servedMetric(known, m)
					switch {
					case strings.HasPrefix(m, "ayrbridge_") && !served:
						c.p.add(file, "%s queries %s, which no ayrbridge program serves", where, m)
					case !strings.HasPrefix(m, "ayrbridge_") && !recorded[m] && !slices.Contains(ruleOtherMetrics(), m):
						c.p.add(file, "%s queries %s, which is neither an ayrbridge metric nor one of %v", where, m, ruleOtherMetrics())
					}
				}
				for _, m := range jobRE.FindAllStringSubmatch(r.Expr, -1) {
					if len(c.d.prometheus) > 0 && !jobs[m[1]] {
						c.p.add(file, "%s selects job %q, which no scrape job of prometheus.yml has", where, m[1])
					}
				}
			}
		}
	}
	c.ruleTestsCover(alerts)
}

// alertText checks an alert's severity label and its annotations for the operator.
func (c checker) alertText(file, where string, r rule) {
	switch sev := r.Labels["severity"]; sev {
	case "critical", "warning", "info":
	case "":
		c.p.add(file, "%s has no severity label", where)
	default:
		c.p.add(file, "%s has severity %q, want critical, warning or info", where, sev)
	}
	for _, a := range []string{"summary", "description"} {
		if strings.TrimSpace(r.Annotations[a]) == "" {
			c.p.add(file, "%s has no %s annotation", where, a)
		}
	}
}

// ruleTestsCover checks that the promtool tests load the rule files and test only alerts they
// define, each at least once firing (exp_alerts not empty) and once quiet (exp_alerts empty).
func (c checker) ruleTestsCover(alerts map[string]string) {
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, file := range slices.Sorted(maps.Keys(c.d.ruleTests)) {
		tf := c.d.ruleTests[file]
		for _, rf := range tf.RuleFiles {
			if _, ok := c.d.rules[path.Join(path.Dir(file), rf)]; !ok {
				c.p.add(file, "loads the rule file %s, which is not deploy/prometheus/alerts.yaml", rf)
			}
		}
		for _, tc := range tf.Tests {
			for _, at := range tc.AlertRuleTests {
				if _, ok := alerts[at.Alertname]; !ok {
					c.p.add(file, "test %q expects alert %s, which no rule file defines", tc.Name, at.Alertname)
				}
				if len(at.ExpAlerts) > 0 {
					fires[at.Alertname] = true
				} else {
					quiet[at.Alertname] = true
				}
			}
		}
	}
	for _, a := range slices.Sorted(maps.Keys(alerts)) {
		if !fires[a] {
			c.p.add(alerts[a], "alert %s has no test in which it fires (an alert_rule_test with exp_alerts)", a)
		}
		if !quiet[a] {
			c.p.add(alerts[a], "alert %s has no test in which it stays quiet (exp_alerts: [])", a)
		}
	}
}
