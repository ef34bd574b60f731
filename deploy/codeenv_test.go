package deploy

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
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

// plannedReplayEnv is what cmd/replay is announced to read. It stands in only while cmd/replay does
// not exist on this branch; once it does, the names are read from its code like the bridge's.
func plannedReplayEnv() map[string]string {
	names := []string{
		"AYRSHARE_API_KEY", "AYRSHARE_API_URL", "AYRSHARE_PROFILE_KEYS",
		"NATS_STREAM", "LOG_FORMAT", "LOG_LEVEL",
	}
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[n] = ""
	}
	return m
}

// codeEnv is what the commands read from the environment.
type codeEnv struct {
	reads   map[program]map[string]string // variable name -> its envDefault ("" when none)
	planned map[program]bool              // the command's names are announced, not read from code
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

// loadCodeEnv reads, for each command, the variables named in cmd/<command>, in its package
// <command>/ if there is one, and in publish (whose ConnConfig every command embeds), by their env
// struct tags or os.Getenv/os.LookupEnv calls.
func loadCodeEnv(root string) (codeEnv, error) {
	c := codeEnv{reads: map[program]map[string]string{}, planned: map[program]bool{}}
	shared, err := envInDir(filepath.Join(root, "publish"))
	if err != nil {
		return codeEnv{}, err
	}
	for _, p := range programs() {
		own, err := envInDir(filepath.Join(root, "cmd", string(p)))
		switch {
		case errors.Is(err, fs.ErrNotExist) && p == replay:
			own, c.planned[p] = plannedReplayEnv(), true
		case err != nil:
			return codeEnv{}, err
		case len(own) == 0:
			return codeEnv{}, fmt.Errorf("cmd/%s reads no environment variable that this test can see", p)
		}
		// A command's own package (replay/ beside cmd/replay) may hold part of its settings.
		// (The path may also be a binary built at the root: only a directory counts.)
		var pkg map[string]string
		if dir := filepath.Join(root, string(p)); isDir(dir) {
			if pkg, err = envInDir(dir); err != nil {
				return codeEnv{}, err
			}
		}
		reads := make(map[string]string, len(own)+len(shared)+len(pkg))
		for _, m := range []map[string]string{shared, pkg, own} {
			for k, v := range m {
				reads[k] = v
			}
		}
		c.reads[p] = reads
	}
	return c, nil
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
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
	for _, name := range []string{"BRIDGE_LISTEN", "AYRSHARE_WEBHOOK_SECRETS", "NATS_URL", "NATS_TLS_KEY", "NATS_DEDUP_WINDOW", "LOG_LEVEL"} {
		if !code.knows(bridge, name) {
			t.Errorf("bridge does not read %s, by this test's reading of cmd/bridge and publish", name)
		}
	}
	if got := code.def("NATS_DEDUP_WINDOW"); got != "24h" {
		t.Errorf("NATS_DEDUP_WINDOW default = %q, want 24h", got)
	}
	for _, name := range []string{"AYRSHARE_API_KEY", "NATS_URL", "NATS_STREAM"} {
		if !code.knows(replay, name) {
			t.Errorf("replay does not read %s (planned: %t)", name, code.planned[replay])
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
	if code.planned[replay] {
		t.Log("cmd/replay does not exist yet: checking replay settings against its announced variables")
	}
	return code
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadCodeEnvReplay checks that the announced replay names stand in only while cmd/replay is
// missing: once it exists, its code decides.
func TestLoadCodeEnvReplay(t *testing.T) {
	tests := map[string]struct {
		replaySrc   string // "" leaves cmd/replay out
		wantPlanned bool
		reads, not  string
	}{
		"cmd/replay missing": {"", true, "AYRSHARE_API_KEY", "REPLAY_ONLY"},
		"cmd/replay present": {"package main\ntype config struct{ K string `env:\"REPLAY_ONLY\"` }\n", false, "REPLAY_ONLY", "AYRSHARE_API_KEY"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			files := map[string]string{
				"publish/conn.go":   "package publish\ntype C struct{ U string `env:\"NATS_URL\"` }\n",
				"cmd/bridge/cfg.go": "package main\ntype config struct{ L string `env:\"BRIDGE_LISTEN\" envDefault:\":8080\"` }\n",
			}
			if tt.replaySrc != "" {
				files["cmd/replay/cfg.go"] = tt.replaySrc
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
			if code.planned[replay] != tt.wantPlanned || !code.knows(replay, tt.reads) || code.knows(replay, tt.not) {
				t.Errorf("replay: planned %t, reads %s %t, reads %s %t", code.planned[replay],
					tt.reads, code.knows(replay, tt.reads), tt.not, code.knows(replay, tt.not))
			}
			if !code.knows(replay, "NATS_URL") || !code.knows(bridge, "NATS_URL") || code.def("BRIDGE_LISTEN") != ":8080" {
				t.Errorf("shared or bridge names lost: %v", code.reads)
			}
		})
	}
}
