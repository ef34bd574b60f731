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
	checkValueLen(t, body, valid)
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

// checkValueLen checks ValueLen on body, of which json.Valid said valid: what it accepts is
// valid JSON, it finds the end of a valid value, and it calls every cut of one truncated.
func checkValueLen(t *testing.T, body []byte, valid bool) {
	t.Helper()
	v := bytes.TrimLeft(body, " \t\r\n")
	n, err := ValueLen(v)
	if err == nil && !json.Valid(v[:n]) {
		t.Fatalf("ValueLen(%q) = %d, but json.Valid(%q) is false", v, n, v[:n])
	}
	if !valid {
		return
	}
	v = bytes.TrimRight(v, " \t\r\n")
	if n, err := ValueLen(append(v[:len(v):len(v)], ',')); err != nil || n != len(v) {
		t.Fatalf("ValueLen(%q + \",\") = %d, %v; want %d", v, n, err, len(v))
	}
	for _, cut := range []int{0, 1, len(v) / 2, len(v) - 1} {
		if cut < 0 || cut >= len(v) {
			continue
		}
		if _, err := ValueLen(v[:cut]); !errors.Is(err, ErrTruncatedJSON) {
			t.Fatalf("ValueLen(%q), a cut of %q: %v, want ErrTruncatedJSON", v[:cut], v, err)
		}
	}
}

func TestValueLen(t *testing.T) {
	tests := map[string]struct {
		in   string
		n    int
		want error
	}{
		"object then more": {`{"a":[1,"}"]} ,{`, 13, nil},
		"string":           {`"a\"b" x`, 6, nil},
		"literal":          {`true]`, 4, nil},
		"number ended":     {`-1.5e3,`, 6, nil},
		"number at end":    {`12`, 0, ErrTruncatedJSON}, // more digits may follow
		"cut literal":      {`fal`, 0, ErrTruncatedJSON},
		"cut escape":       {`"\u00`, 0, ErrTruncatedJSON},
		"cut object":       {`{"a":[1,`, 0, ErrTruncatedJSON},
		"bad literal":      {`fals]`, 0, ErrMalformedJSON},
		"bad escape":       {`"\u00g`, 0, ErrMalformedJSON},
		"bad member":       {`{"a" 1`, 0, ErrMalformedJSON},
		"leading space":    {` 1,`, 0, ErrMalformedJSON},
		"empty":            {``, 0, ErrTruncatedJSON},
	}
	for name, tc := range tests {
		n, err := ValueLen([]byte(tc.in))
		if n != tc.n || !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: ValueLen(%q) = %d, %v; want %d, %v", name, tc.in, n, err, tc.n, tc.want)
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
