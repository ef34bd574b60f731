package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// checkScan compares scanObject with encoding/json on body.
func checkScan(t *testing.T, body []byte) {
	t.Helper()
	var got []string
	err := scanObject(body, func(key, raw []byte, escaped bool) { got = append(got, string(key)+"="+string(raw)) })
	valid := json.Valid(body)
	if valid != !errors.Is(err, ErrMalformedJSON) {
		t.Fatalf("scanObject(%q) = %v, json.Valid = %v", body, err, valid)
	}
	if !valid {
		return
	}
	isObject := bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{"))
	if isObject != (err == nil) {
		t.Fatalf("scanObject(%q) = %v for a valid value (object: %v)", body, err, isObject)
	}
	if !isObject {
		return
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil {
		t.Fatal(err)
	}
	if len(got) < len(members) {
		t.Fatalf("scanObject saw %d members, encoding/json %d", len(got), len(members))
	}
	env, perr := Parse(body)
	if perr != nil {
		return
	}
	for field, v := range map[string]string{"action": env.Action, "subAction": env.SubAction, "type": env.Type,
		"hookId": env.HookID, "refId": env.RefID, "platform": env.Platform, "created": env.Created} {
		var want string
		_ = json.Unmarshal(members[field], &want)
		if v != want {
			t.Fatalf("%s = %q, encoding/json says %q (body %q)", field, v, want, body)
		}
	}
}

func TestScanMatchesEncodingJSON(t *testing.T) {
	deep := func(n int, open, close string) string { return strings.Repeat(open, n) + strings.Repeat(close, n) }
	for _, body := range []string{
		``, ` `, `{}`, ` {} `, `{`, `}`, `{"a":1,}`, `{,}`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{"a":1 "b":2}`, `{1:2}`,
		`[]`, `[1,]`, `[,1]`, `[1 2]`, `"x"`, `"\u12"`, `"\u12g4"`, `"\x"`, "\"a\tb\"", "\"\x7f\xff\"", `"\/\b\f\n\r\t\"\\"`,
		`0`, `-0`, `01`, `-`, `1.`, `.1`, `1.5e`, `1e+`, `1E-7`, `-1.25e+10`, `2e308`, `true`, `tru`, `nul`, `falsey`,
		`{"action":"a","action":"b"}`, `{"act\u0069on":"x"}`, `{"action":"\ud800"}`, `{"x":[{"y":{"z":[1,2,{"w":null}]}}],"action":"q"}`,
		`{"a":1}x`, `{"a":1} {"b":2}`, "{\"a\":1}\n",
		"{\"a\":" + deep(9999, "[", "]") + "}", "{\"a\":" + deep(10000, "[", "]") + "}",
		deep(10000, "[", "]"), deep(10001, "[", "]"),
		strings.Repeat(`{"b":`, 10000) + "1" + strings.Repeat("}", 10000),
		strings.Repeat(`{"b":`, 10001) + "1" + strings.Repeat("}", 10001),
	} {
		checkScan(t, []byte(body))
	}
}

func FuzzScan(f *testing.F) {
	for _, s := range []string{`{"action":"a","x":[1,{"y":"\u00e9"}]}`, `[1,2]`, `{"a":-1.5e3}`, `"s"`, `{"a":tru}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkScan(t, body) })
}
