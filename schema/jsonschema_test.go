package schema_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	invopop "github.com/invopop/jsonschema"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/ayrbridge/ayrbridge/schema"
)

// The JSON Schemas under jsonschema/ are generated from the payload types by the test below; the
// generator lives in this test file so that importing schema never pulls it in.
//
//go:generate go test -run TestJSONSchemaFiles -update-jsonschema .

var updateJSONSchema = flag.Bool("update-jsonschema", false, "rewrite schema/jsonschema/*.json from the payload types")

// jsonSchemaDir holds one schema per documented action, named <action>.json.
const jsonSchemaDir = "jsonschema"

// documented pairs each documented action with the type schema.Payload decodes it into.
func documented() map[string]any {
	return map[string]any{
		schema.ActionScheduled:       schema.Scheduled{},
		schema.ActionSocial:          schema.Social{},
		schema.ActionMessages:        schema.Message{},
		schema.ActionBatch:           schema.Batch{},
		schema.ActionFeed:            schema.Feed{},
		schema.ActionAccountActivity: schema.AccountActivity{},
	}
}

// generateJSONSchemas reflects each documented payload type into its JSON Schema, keyed by file
// name. Unknown members stay allowed, as the bridge passes them through.
func generateJSONSchemas(t testing.TB) map[string][]byte {
	t.Helper()
	r := &invopop.Reflector{
		AllowAdditionalProperties: true,
		ExpandedStruct:            true,
		Mapper:                    mapSpecialTypes,
	}
	if err := r.AddGoComments("github.com/ayrbridge/ayrbridge/schema", "."); err != nil {
		t.Fatalf("read the doc comments: %v", err)
	}
	out := map[string][]byte{}
	for action, v := range documented() {
		s := r.Reflect(v)
		s.ID = invopop.ID(schema.DataSchema(action))
		s.Title = "Ayrshare " + action + " webhook"
		prop, ok := s.Properties.Get("action")
		if !ok {
			t.Fatalf("%T has no action property", v)
		}
		prop.Const = action
		b, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		out[action+".json"] = append(b, '\n')
	}
	return out
}

// mapSpecialTypes gives the JSON form of types whose Go form says nothing about it.
func mapSpecialTypes(t reflect.Type) *invopop.Schema {
	switch t {
	case reflect.TypeFor[schema.TimeStamp]():
		return &invopop.Schema{
			Description: "Unix seconds as a number, or a string holding digits or an RFC 3339 time.",
			OneOf:       []*invopop.Schema{{Type: "number"}, {Type: "string"}},
		}
	case reflect.TypeFor[json.Number]():
		return &invopop.Schema{AnyOf: []*invopop.Schema{
			{Type: "number"},
			{Type: "string", Pattern: `^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`},
		}}
	}
	return nil
}

// TestJSONSchemaFiles checks that the committed schemas are what the payload types generate
// (go generate ./schema rewrites them) and that each has the $id the bridge sends as ce-dataschema.
func TestJSONSchemaFiles(t *testing.T) {
	want := generateJSONSchemas(t)
	if *updateJSONSchema {
		if err := os.MkdirAll(jsonSchemaDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range want {
			if err := os.WriteFile(filepath.Join(jsonSchemaDir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	entries, err := os.ReadDir(jsonSchemaDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if wantNames := slices.Sorted(maps.Keys(want)); !slices.Equal(names, wantNames) {
		t.Errorf("%s/ holds %v, want %v", jsonSchemaDir, names, wantNames)
	}
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(jsonSchemaDir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if !bytes.Equal(got, b) {
			t.Errorf("%s/%s is not what the payload types generate: run go generate ./schema", jsonSchemaDir, name)
		}
		var doc struct {
			ID string `json:"$id"`
		}
		if err := json.Unmarshal(got, &doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		action := strings.TrimSuffix(name, ".json")
		if doc.ID != schema.DataSchema(action) || !strings.HasPrefix(doc.ID, schema.DataSchemaBase) {
			t.Errorf("%s has $id %q, the bridge sends ce-dataschema %q", name, doc.ID, schema.DataSchema(action))
		}
	}
}

// compileSchemas compiles the committed schemas, checking them against their metaschema.
func compileSchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	for action := range documented() {
		doc := readJSON(t, filepath.Join(jsonSchemaDir, action+".json"))
		if err := c.AddResource(schema.DataSchema(action), doc); err != nil {
			t.Fatal(err)
		}
	}
	out := map[string]*jsonschema.Schema{}
	for action := range documented() {
		s, err := c.Compile(schema.DataSchema(action))
		if err != nil {
			t.Fatalf("compile %s: %v", action, err)
		}
		out[action] = s
	}
	return out
}

func readJSON(t *testing.T, path string) any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// TestFixturesValidate validates every documented webhook example against its action's schema.
func TestFixturesValidate(t *testing.T) {
	schemas := compileSchemas(t)
	paths, err := filepath.Glob(filepath.Join("testdata", "fixtures", "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures (%v)", err)
	}
	seen := map[string]bool{}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			body, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			env, err := schema.Parse(body)
			if err != nil {
				t.Fatal(err)
			}
			s, ok := schemas[env.Action]
			if !ok {
				t.Fatalf("action %q has no schema", env.Action)
			}
			seen[env.Action] = true
			if err := s.Validate(readJSON(t, path)); err != nil {
				t.Errorf("does not validate against %s.json: %v", env.Action, err)
			}
		})
	}
	for action := range documented() {
		if !seen[action] {
			t.Errorf("no fixture exercises %s.json", action)
		}
	}
}

// TestSchemasRefuseWrongPayloads feeds payloads that schema.Payload cannot decode (or that belong
// to another action) to the schemas and expects each to be refused.
func TestSchemasRefuseWrongPayloads(t *testing.T) {
	schemas := compileSchemas(t)
	tests := map[string]struct {
		action, body, want string
	}{
		"action is a number":        {schema.ActionFeed, `{"action": 7}`, "/action"},
		"action of another schema":  {schema.ActionScheduled, `{"action": "messages"}`, "/action"},
		"action missing":            {schema.ActionSocial, `{"type": "link"}`, "action"},
		"timeStamp is an object":    {schema.ActionMessages, `{"action": "messages", "timeStamp": {"s": 1}}`, "/timeStamp"},
		"timeStamp is a boolean":    {schema.ActionBatch, `{"action": "batch", "timeStamp": true}`, "/timeStamp"},
		"code is a string":          {schema.ActionSocial, `{"action": "social", "code": "200"}`, "/code"},
		"postIds is an object":      {schema.ActionScheduled, `{"action": "scheduled", "postIds": {"id": "x"}}`, "/postIds"},
		"userCount is not a number": {schema.ActionBatch, `{"action": "batch", "userCount": "many"}`, "/userCount"},
		"senderDetails is a string": {schema.ActionMessages, `{"action": "messages", "senderDetails": "Sweet"}`, "/senderDetails"},
		"userHasBlocked is a string": {schema.ActionAccountActivity,
			`{"action": "accountActivity", "userHasBlocked": "no"}`, "/userHasBlocked"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			inst, err := jsonschema.UnmarshalJSON(strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			err = schemas[tt.action].Validate(inst)
			if err == nil {
				t.Fatalf("%s.json accepts %s", tt.action, tt.body)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s", err, tt.want)
			}
			// The schemas are no stricter than the Go types: whatever they refuse here, the typed
			// decoding refuses too (or it is another action's payload).
			if p, derr := schema.Payload([]byte(tt.body)); derr == nil && reflect.TypeOf(p) == reflect.TypeOf(documented()[tt.action]) {
				t.Errorf("schema.Payload decodes %s into %T, the schema refuses it", tt.body, p)
			}
		})
	}
}

func TestSchemasAllowUnknownMembers(t *testing.T) {
	schemas := compileSchemas(t)
	for action, s := range schemas {
		body := `{"action": "` + action + `", "aFieldAyrshareAddsLater": {"x": [1, 2]}, "timeStamp": "1717889610"}`
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(inst); err != nil {
			t.Errorf("%s.json refuses an unknown member or a string timeStamp: %v", action, err)
		}
	}
}
