package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"
)

// fileKind says how a deployment file is read and checked.
type fileKind string

const (
	kindDockerfile fileKind = "Dockerfile"
	kindCompose    fileKind = "compose"
	kindKubernetes fileKind = "kubernetes"
	kindNATSConf   fileKind = "nats config"
	kindStream     fileKind = "stream definition"
	kindGrafana    fileKind = "grafana dashboard"
	kindRules      fileKind = "prometheus rules"
	kindRuleTests  fileKind = "promtool rule tests"
	kindPromConfig fileKind = "prometheus config"
)

// source is a set of deployment files of one kind, as a glob under deploy/.
type source struct {
	pattern string
	kind    fileKind
}

// sources lists every deployment file the checks read.
func sources() []source {
	return []source{
		{"Dockerfile", kindDockerfile},
		{"compose.yaml", kindCompose},
		{"kubernetes/*.yaml", kindKubernetes},
		{"nats/*.conf", kindNATSConf},
		{"nats/stream.json", kindStream},
		{"grafana/*.json", kindGrafana},
		{"prometheus/alerts.yaml", kindRules},
		{"prometheus/alerts_test.yaml", kindRuleTests},
		{"prometheus/prometheus.yml", kindPromConfig},
	}
}

// deployFiles are the deployment files' contents by their slash-separated path under deploy/.
type deployFiles map[string][]byte

// readDeployFiles reads every file sources names from dir, failing on a pattern that matches none.
func readDeployFiles(t testing.TB, dir string) deployFiles {
	t.Helper()
	files := deployFiles{}
	for _, src := range sources() {
		matches, err := filepath.Glob(filepath.Join(dir, filepath.FromSlash(src.pattern)))
		if err != nil || len(matches) == 0 {
			t.Fatalf("no %s file matches deploy/%s (err %v)", src.kind, src.pattern, err)
		}
		for _, m := range matches {
			b, err := os.ReadFile(m)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(dir, m)
			files[filepath.ToSlash(rel)] = b
		}
	}
	return files
}

// kindOf returns the kind of a file by the first source whose pattern matches it.
func kindOf(name string) (fileKind, bool) {
	for _, src := range sources() {
		if ok, _ := path.Match(src.pattern, name); ok {
			return src.kind, true
		}
	}
	return "", false
}

// sorted returns the files' names in order, for reports that do not change between runs.
func (f deployFiles) sorted() []string {
	names := make([]string, 0, len(f))
	for n := range f {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// problems collects what the checks find wrong, each naming its file.
type problems []string

func (p *problems) add(file, format string, args ...any) {
	*p = append(*p, file+": "+fmt.Sprintf(format, args...))
}

// deployment is every deployment file, parsed.
type deployment struct {
	docker     dockerfile
	compose    composeFile
	objects    []k8sObject
	streams    map[string]jetstream.StreamConfig // by file
	natsConfs  map[string]string                 // by file
	dashboards map[string]any                    // by file
	rules      map[string]ruleFile               // by file
	ruleTests  map[string]ruleTestFile           // by file
	prometheus map[string]promConfig             // by file
}

// parse parses every file by its kind; a file that does not parse is a problem.
func parse(files deployFiles, p *problems) *deployment {
	d := &deployment{
		streams:    map[string]jetstream.StreamConfig{},
		natsConfs:  map[string]string{},
		dashboards: map[string]any{},
		rules:      map[string]ruleFile{},
		ruleTests:  map[string]ruleTestFile{},
		prometheus: map[string]promConfig{},
	}
	for _, name := range files.sorted() {
		data := files[name]
		kind, ok := kindOf(name)
		if !ok {
			p.add(name, "not a deployment file the checks know")
			continue
		}
		var err error
		switch kind {
		case kindDockerfile:
			d.docker, err = parseDockerfile(data)
		case kindCompose:
			err = strictYAML(data, &d.compose)
		case kindKubernetes:
			var objs []k8sObject
			objs, err = parseKubernetes(name, data)
			d.objects = append(d.objects, objs...)
		case kindNATSConf:
			d.natsConfs[name] = string(data)
		case kindStream:
			var cfg jetstream.StreamConfig
			err = strictJSON(data, &cfg)
			d.streams[name] = cfg
		case kindGrafana:
			var dash any
			err = strictJSON(data, &dash)
			d.dashboards[name] = dash
		case kindRules:
			var rf ruleFile
			err = strictYAML(data, &rf)
			d.rules[name] = rf
		case kindRuleTests:
			var tf ruleTestFile
			err = strictYAML(data, &tf)
			d.ruleTests[name] = tf
		case kindPromConfig:
			var pc promConfig
			err = strictYAML(data, &pc)
			d.prometheus[name] = pc
		}
		if err != nil {
			p.add(name, "does not parse as a %s: %v", kind, err)
		}
	}
	return d
}

func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("json: %w", err)
	}
	return nil
}

// strictYAML decodes one YAML document, refusing keys v has no field for (so a misspelt key is
// caught rather than ignored).
func strictYAML(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	return nil
}

// dockerfile is a Dockerfile's instructions by build stage.
type dockerfile struct {
	stages [][]dockerInstr // the first instruction of each stage is its FROM
}

type dockerInstr struct {
	cmd  string // upper case
	args string
}

// parseDockerfile splits a Dockerfile into instructions, joining continued lines and dropping
// comments, and those into stages.
func parseDockerfile(data []byte) (dockerfile, error) {
	var df dockerfile
	var cur strings.Builder
	flush := func() error {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := dockerInstr{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		switch {
		case in.cmd == "FROM":
			df.stages = append(df.stages, []dockerInstr{in})
		case len(df.stages) == 0 && in.cmd != "ARG":
			return fmt.Errorf("%s before the first FROM", in.cmd)
		case len(df.stages) > 0:
			last := len(df.stages) - 1
			df.stages[last] = append(df.stages[last], in)
		}
		return nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(trimmed)
		if err := flush(); err != nil {
			return dockerfile{}, err
		}
	}
	if err := flush(); err != nil {
		return dockerfile{}, err
	}
	if len(df.stages) == 0 {
		return dockerfile{}, fmt.Errorf("no FROM")
	}
	return df, nil
}

// final returns the instructions of the stage that becomes the image.
func (df dockerfile) final() []dockerInstr {
	if len(df.stages) == 0 {
		return nil
	}
	return df.stages[len(df.stages)-1]
}

// last returns the arguments of the final stage's last cmd instruction, or "".
func (df dockerfile) last(cmd string) string {
	final := df.final()
	for i := len(final) - 1; i >= 0; i-- {
		if final[i].cmd == cmd {
			return final[i].args
		}
	}
	return ""
}

// entrypoint returns the exec-form ENTRYPOINT of the image.
func (df dockerfile) entrypoint() ([]string, error) {
	var ep []string
	if err := json.Unmarshal([]byte(df.last("ENTRYPOINT")), &ep); err != nil || len(ep) == 0 {
		return nil, fmt.Errorf("ENTRYPOINT %q is not a non-empty exec-form JSON array", df.last("ENTRYPOINT"))
	}
	return ep, nil
}

// composeFile is the part of a compose file the checks read; other keys are refused, so that
// a setting these checks cannot see (an env_file, say) is a conscious change to this test.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image           string       `yaml:"image"`
	Build           composeBuild `yaml:"build"`
	Entrypoint      stringList   `yaml:"entrypoint"`
	Command         stringList   `yaml:"command"`
	Environment     yaml.Node    `yaml:"environment"`
	Profiles        []string     `yaml:"profiles"`
	Ports           []string     `yaml:"ports"`
	Volumes         []string     `yaml:"volumes"`
	DependsOn       yaml.Node    `yaml:"depends_on"`
	Healthcheck     yaml.Node    `yaml:"healthcheck"`
	Restart         string       `yaml:"restart"`
	ReadOnly        bool         `yaml:"read_only"`
	CapDrop         []string     `yaml:"cap_drop"`
	SecurityOpt     []string     `yaml:"security_opt"`
	StopGracePeriod string       `yaml:"stop_grace_period"`
}

// composeBuild is a service's build: a context path, or context and dockerfile.
type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

// UnmarshalYAML accepts the short form (a context path) too.
func (b *composeBuild) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	type plain composeBuild
	return n.Decode((*plain)(b))
}

// stringList is a compose command or entrypoint: a list, or a string split at spaces.
type stringList []string

// UnmarshalYAML accepts a string or a list of strings.
func (s *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = strings.Fields(n.Value)
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}

// composeEnvironment reads a service's environment in either of its forms: a map (a null value
// passes the shell's value through) or a list of NAME=value or NAME. Values are nil when not given.
// A map may merge others (<<: *anchor), as the edges of compose.yaml share theirs.
func composeEnvironment(n yaml.Node) (map[string]*string, error) {
	env := map[string]*string{}
	switch n.Kind {
	case 0:
		return env, nil
	case yaml.AliasNode:
		return composeEnvironment(*n.Alias)
	case yaml.MappingNode:
		// Merged maps first: the map's own keys override theirs, wherever the << stands.
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag != "!!merge" {
				continue
			}
			merged := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				merged = v.Content
			}
			for _, m := range merged {
				if m.Kind == yaml.AliasNode {
					m = m.Alias
				}
				if m.Kind != yaml.MappingNode {
					return nil, fmt.Errorf("environment at line %d merges something other than a map", m.Line)
				}
				menv, err := composeEnvironment(*m)
				if err != nil {
					return nil, err
				}
				maps.Copy(env, menv)
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				continue
			}
			if v.Tag == "!!null" {
				env[k.Value] = nil
				continue
			}
			env[k.Value] = &v.Value
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			name, value, ok := strings.Cut(item.Value, "=")
			if !ok {
				env[name] = nil
				continue
			}
			env[name] = &value
		}
	default:
		return nil, fmt.Errorf("environment at line %d is neither a map nor a list", n.Line)
	}
	return env, nil
}

// k8sObject is the part of a Kubernetes object (or the Kustomization) the checks read.
type k8sObject struct {
	file       string
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   k8sMeta           `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       k8sSpec           `yaml:"spec"`
	Resources  []string          `yaml:"resources"`
	Images     []k8sImage        `yaml:"images"`
}

type k8sMeta struct {
	Name         string            `yaml:"name"`
	GenerateName string            `yaml:"generateName"`
	Labels       map[string]string `yaml:"labels"`
	Annotations  map[string]string `yaml:"annotations"`
}

// name returns the name, or the generateName prefix.
func (o k8sObject) name() string {
	if o.Metadata.Name != "" {
		return o.Metadata.Name
	}
	return o.Metadata.GenerateName
}

type k8sImage struct {
	Name    string `yaml:"name"`
	NewName string `yaml:"newName"`
	NewTag  string `yaml:"newTag"`
}

// k8sSpec merges the spec fields of the kinds the checks look into.
type k8sSpec struct {
	Replicas     *int           `yaml:"replicas"`
	Strategy     *strategy      `yaml:"strategy"`
	Selector     map[string]any `yaml:"selector"`
	Template     *podTemplate   `yaml:"template"`
	JobTemplate  *jobTemplate   `yaml:"jobTemplate"`
	MinAvailable *intOrString   `yaml:"minAvailable"`
	Ports        []servicePort  `yaml:"ports"`
	ClusterIP    string         `yaml:"clusterIP"`
	// StatefulSet
	ServiceName          string          `yaml:"serviceName"`
	VolumeClaimTemplates []claimTemplate `yaml:"volumeClaimTemplates"`
}

// strategy is a Deployment's update strategy: RollingUpdate (the default) or Recreate.
type strategy struct {
	Type string `yaml:"type"`
}

type claimTemplate struct {
	Metadata k8sMeta `yaml:"metadata"`
}

type jobTemplate struct {
	Spec k8sSpec `yaml:"spec"`
}

type podTemplate struct {
	Metadata k8sMeta `yaml:"metadata"`
	Spec     podSpec `yaml:"spec"`
}

type podSpec struct {
	SecurityContext *securityContext `yaml:"securityContext"`
	Containers      []container      `yaml:"containers"`
	RestartPolicy   string           `yaml:"restartPolicy"`
	Volumes         []podVolume      `yaml:"volumes"`
}

// podVolume is a pod's volume; of its kinds only Secret is read, where the bridge's mounted
// secrets and certificate come from.
type podVolume struct {
	Name   string `yaml:"name"`
	Secret *struct {
		SecretName  string `yaml:"secretName"`
		Optional    bool   `yaml:"optional"`
		DefaultMode *int   `yaml:"defaultMode"` // octal in YAML (0440), as Kubernetes reads it
	} `yaml:"secret"`
}

type container struct {
	Name            string               `yaml:"name"`
	Image           string               `yaml:"image"`
	Command         []string             `yaml:"command"`
	Args            []string             `yaml:"args"`
	Env             []envVar             `yaml:"env"`
	EnvFrom         []envFrom            `yaml:"envFrom"`
	Ports           []containerPort      `yaml:"ports"`
	LivenessProbe   *probe               `yaml:"livenessProbe"`
	ReadinessProbe  *probe               `yaml:"readinessProbe"`
	Resources       map[string]yaml.Node `yaml:"resources"`
	SecurityContext *securityContext     `yaml:"securityContext"`
	VolumeMounts    []volumeMount        `yaml:"volumeMounts"`
}

type volumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	SubPath   string `yaml:"subPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef    *keyRef `yaml:"secretKeyRef"`
		ConfigMapKeyRef *keyRef `yaml:"configMapKeyRef"`
		FieldRef        *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
	} `yaml:"valueFrom"`
}

type keyRef struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional bool   `yaml:"optional"`
}

type envFrom struct {
	Prefix       string `yaml:"prefix"`
	ConfigMapRef *struct {
		Name string `yaml:"name"`
	} `yaml:"configMapRef"`
	SecretRef *struct {
		Name string `yaml:"name"`
	} `yaml:"secretRef"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

type servicePort struct {
	Name       string      `yaml:"name"`
	Port       int         `yaml:"port"`
	TargetPort intOrString `yaml:"targetPort"`
}

type probe struct {
	HTTPGet *struct {
		Path   string      `yaml:"path"`
		Port   intOrString `yaml:"port"`
		Scheme string      `yaml:"scheme"` // HTTP when empty
	} `yaml:"httpGet"`
}

// intOrString is a Kubernetes IntOrString: a port number or a port name.
type intOrString string

type securityContext struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	FSGroup                  *int64 `yaml:"fsGroup"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	Capabilities             *struct {
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
}

// parseKubernetes decodes every YAML document of a file.
func parseKubernetes(file string, data []byte) ([]k8sObject, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var objs []k8sObject
	for i := 1; ; i++ {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if o.Kind == "" {
			return nil, fmt.Errorf("document %d has no kind", i)
		}
		o.file = file
		objs = append(objs, o)
	}
}

// pod is one pod template with the object that holds it.
type pod struct {
	obj  k8sObject
	spec podSpec
	meta k8sMeta
}

// pods returns the pod templates of Deployments, StatefulSets, Jobs and CronJobs.
func pods(objs []k8sObject) []pod {
	var out []pod
	for _, o := range objs {
		spec := o.Spec
		if o.Kind == "CronJob" && spec.JobTemplate != nil {
			spec = spec.JobTemplate.Spec
		}
		if spec.Template != nil {
			out = append(out, pod{obj: o, spec: spec.Template.Spec, meta: spec.Template.Metadata})
		}
	}
	return out
}

// imageRepo splits an image reference into repository and tag; a compose ${VARIABLE:-default}
// in it counts as its default.
func imageRepo(ref string) (repo, tag string) {
	ref = regexp.MustCompile(`\$\{[A-Za-z0-9_]+:?-([^}]*)\}`).ReplaceAllString(ref, "$1")
	slash := strings.LastIndex(ref, "/")
	if colon := strings.LastIndex(ref, ":"); colon > slash {
		return ref[:colon], ref[colon+1:]
	}
	return ref, ""
}

// listenPort returns the port of a host:port listen address.
func listenPort(addr string) (int, error) {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return 0, fmt.Errorf("listen address %q has no port", addr)
	}
	return strconv.Atoi(addr[i+1:])
}

// sinceArg returns the duration of a --since (or -since) flag among args.
func sinceArg(args []string) (time.Duration, bool) {
	value, ok := flagValue(args, "since")
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(value)
	return d, err == nil
}

// flagValue returns the value of the first --name (or -name, --name=value) flag among args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		n, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if n != name || !strings.HasPrefix(a, "-") {
			continue
		}
		if !hasValue && i+1 < len(args) {
			value = args[i+1]
		}
		return value, true
	}
	return "", false
}

// containsAll reports whether every label of want is in have.
func containsAll(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return len(want) > 0
}

// stringMap converts a decoded YAML map of strings.
func stringMap(v any) map[string]string {
	m, _ := v.(map[string]any)
	out := make(map[string]string, len(m))
	for k, v := range m {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}
