package deploy

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// program is one ayrbridge command, named like its binary and its directory under cmd/.
type program string

const (
	bridge program = "bridge"
	replay program = "replay"
)

// programs are the commands the image carries.
func programs() []program { return []program{bridge, replay} }

// codeEnv is what the commands read from the environment.
type codeEnv struct {
	reads map[program]map[string]string // variable name -> its envDefault ("" when none)
}

// knows reports whether p reads name.
func (c codeEnv) knows(p program, name string) bool {
	_, ok := c.reads[p][name]
	return ok
}

// anyKnows reports whether some command reads name.
func (c codeEnv) anyKnows(name string) bool {
	return slices.ContainsFunc(programs(), func(p program) bool { return c.knows(p, name) })
}

// def returns the default the bridge declares for name.
func (c codeEnv) def(name string) string { return c.reads[bridge][name] }

// modulePath prefixes the import paths of this repository's packages.
const modulePath = "github.com/ayrbridge/ayrbridge/"

// loadCodeEnv reads, for each command, the variables named in cmd/<command> and in every package
// of this module it imports (publish's ConnConfig, internal/logging's Config, replay/...), by
// their env struct tags or os.Getenv/os.LookupEnv calls.
func loadCodeEnv(root string) (codeEnv, error) {
	c := codeEnv{reads: map[program]map[string]string{}}
	for _, p := range programs() {
		dir := filepath.Join(root, "cmd", string(p))
		reads, err := envInDir(dir)
		if err != nil {
			return codeEnv{}, err
		}
		imports, err := moduleImports(dir)
		if err != nil {
			return codeEnv{}, err
		}
		for _, imp := range imports {
			pkg, err := envInDir(filepath.Join(root, filepath.FromSlash(imp)))
			if err != nil {
				return codeEnv{}, err
			}
			for k, v := range pkg {
				if _, own := reads[k]; !own {
					reads[k] = v
				}
			}
		}
		if len(reads) == 0 {
			return codeEnv{}, fmt.Errorf("cmd/%s reads no environment variable that this test can see", p)
		}
		c.reads[p] = reads
	}
	return c, nil
}

// moduleImports lists the packages of this module that the non-test files of dir import, as
// paths relative to the repository root.
func moduleImports(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	var out []string
	fset := token.NewFileSet()
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.ImportsOnly)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", n, err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if rel, ok := strings.CutPrefix(path, modulePath); ok && !slices.Contains(out, rel) {
				out = append(out, rel)
			}
		}
	}
	return out, nil
}

// envInDir parses every non-test Go file of dir and returns the environment variables it names,
// with their envDefault values.
func envInDir(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	names := map[string]string{}
	fset := token.NewFileSet()
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", n, err)
		}
		ast.Inspect(f, func(node ast.Node) bool {
			switch node := node.(type) {
			case *ast.Field:
				if name, def, ok := envTag(node); ok {
					names[name] = def
				}
			case *ast.CallExpr:
				if name, ok := getenvCall(node); ok {
					if _, seen := names[name]; !seen {
						names[name] = ""
					}
				}
			}
			return true
		})
	}
	return names, nil
}

// envTag returns the variable a struct field's `env:"NAME,options"` tag names, and its envDefault.
func envTag(f *ast.Field) (name, def string, ok bool) {
	if f.Tag == nil {
		return "", "", false
	}
	raw, err := strconv.Unquote(f.Tag.Value)
	if err != nil {
		return "", "", false
	}
	tag := reflect.StructTag(raw)
	name, _, _ = strings.Cut(tag.Get("env"), ",")
	return name, tag.Get("envDefault"), name != ""
}

// getenvCall returns the variable of an os.Getenv("NAME") or os.LookupEnv("NAME") call.
func getenvCall(call *ast.CallExpr) (string, bool) {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || len(call.Args) != 1 {
		return "", false
	}
	if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "os" || (sel.Sel.Name != "Getenv" && sel.Sel.Name != "LookupEnv") {
		return "", false
	}
	lit, ok := call.Args[0].(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	name, err := strconv.Unquote(lit.Value)
	return name, err == nil
}

func TestEnvInDir(t *testing.T) {
	tests := map[string]struct {
		src  string
		want map[string]string
	}{
		"tags with defaults and options": {
			src:  "package p\ntype c struct {\n\tA string `env:\"A_NAME\" envDefault:\"x\"`\n\tB []string `env:\"B_NAME,required\" envSeparator:\",\"`\n\tC int `json:\"c\"`\n}\n",
			want: map[string]string{"A_NAME": "x", "B_NAME": ""},
		},
		"getenv and lookupenv": {
			src:  "package p\nimport \"os\"\nfunc f() { _ = os.Getenv(\"G_NAME\"); _, _ = os.LookupEnv(\"L_NAME\"); _ = os.Getenv(name) }\nvar name = \"N\"\n",
			want: map[string]string{"G_NAME": "", "L_NAME": ""},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "c.go"), tt.src)
			writeFile(t, filepath.Join(dir, "c_test.go"), "package p\ntype t struct{ X int `env:\"TEST_ONLY\"` }\n")
			got, err := envInDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("envInDir = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLoadCodeEnv(t *testing.T) {
	code := loadCode(t)
	for _, name := range []string{"BRIDGE_LISTEN", "AYRSHARE_WEBHOOK_SECRETS", "NATS_URL", "NATS_TLS_KEY", "NATS_DEDUP_WINDOW", "LOG_LEVEL", "NATS_HUB_URL", "NATS_EDGE_ID"} {
		if !code.knows(bridge, name) {
			t.Errorf("bridge does not read %s, by this test's reading of cmd/bridge and publish", name)
		}
	}
	if got := code.def("NATS_DEDUP_WINDOW"); got != "24h" {
		t.Errorf("NATS_DEDUP_WINDOW default = %q, want 24h", got)
	}
	// The edge checks compare the hub's config with this default.
	if got := code.def("NATS_HUB_DOMAIN"); got != "hub" {
		t.Errorf("NATS_HUB_DOMAIN default = %q, want hub", got)
	}
	for _, name := range []string{"AYRSHARE_API_KEY", "NATS_URL", "NATS_STREAM"} {
		if !code.knows(replay, name) {
			t.Errorf("replay does not read %s", name)
		}
	}
	if code.knows(replay, "BRIDGE_LISTEN") {
		t.Error("replay reads BRIDGE_LISTEN: the per-command split is wrong")
	}
}

// loadCode reads the environment variables of the repository's commands.
func loadCode(t testing.TB) codeEnv {
	t.Helper()
	code, err := loadCodeEnv("..")
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadCodeEnvFollowsImports checks that a command reads what the packages it imports
// declare, and only those.
func TestLoadCodeEnvFollowsImports(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"publish/conn.go":       "package publish\ntype C struct{ U string `env:\"NATS_URL\"` }\n",
		"internal/logging/l.go": "package logging\ntype C struct{ L string `env:\"LOG_LEVEL\" envDefault:\"info\"` }\n",
		"replay/r.go":           "package replay\ntype C struct{ K string `env:\"REPLAY_ONLY\"` }\n",
		"cmd/bridge/cfg.go":     "package main\nimport (\n\t\"github.com/ayrbridge/ayrbridge/publish\"\n\t\"github.com/ayrbridge/ayrbridge/internal/logging\"\n)\ntype config struct{ L string `env:\"BRIDGE_LISTEN\" envDefault:\":8080\"`; N publish.C; G logging.C }\n",
		"cmd/replay/cfg.go":     "package main\nimport (\n\t\"github.com/ayrbridge/ayrbridge/publish\"\n\t\"github.com/ayrbridge/ayrbridge/replay\"\n)\ntype config struct{ N publish.C; R replay.C }\n",
	}
	for path, src := range files {
		full := filepath.Join(root, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, full, src)
	}
	code, err := loadCodeEnv(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		p     program
		name  string
		reads bool
	}{
		{bridge, "BRIDGE_LISTEN", true}, {bridge, "NATS_URL", true}, {bridge, "LOG_LEVEL", true}, {bridge, "REPLAY_ONLY", false},
		{replay, "REPLAY_ONLY", true}, {replay, "NATS_URL", true}, {replay, "LOG_LEVEL", false}, {replay, "BRIDGE_LISTEN", false},
	} {
		if got := code.knows(tt.p, tt.name); got != tt.reads {
			t.Errorf("%s reads %s: %v, want %v", tt.p, tt.name, got, tt.reads)
		}
	}
	if code.def("BRIDGE_LISTEN") != ":8080" {
		t.Errorf("bridge default lost: %v", code.reads)
	}
}
