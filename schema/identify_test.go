package schema

import (
	"errors"
	"testing"
)

// TestIdentifyAgreesWithNewEvent holds the cases of the replay's former hand-written peek: the id
// and created that Identify reads must be those NewEvent gives.
func TestIdentifyAgreesWithNewEvent(t *testing.T) {
	tests := map[string]struct {
		body, id, created string
	}{
		"plain":                 {`{"action":"social","created":"2025-09-05T23:13:08Z","hookId":"6e4zPT9ozQpxD72WX78r"}`, "6e4zPT9ozQpxD72WX78r", "2025-09-05T23:13:08Z"},
		"spaces":                {"{ \"hookId\" : \"h1\" ,\n \"created\" :\t\"2025-09-05T23:13:08Z\", \"action\":\"social\" }", "h1", "2025-09-05T23:13:08Z"},
		"nested keys ignored":   {`{"action":"a","data":{"hookId":"inner","created":"x"},"hookId":"outer","created":"2025-01-01T00:00:00Z","n":[1,{"hookId":"z"}]}`, "outer", "2025-01-01T00:00:00Z"},
		"later duplicate wins":  {`{"action":"a","hookId":"first","hookId":"second","created":"2025-01-01T00:00:00Z"}`, "second", "2025-01-01T00:00:00Z"},
		"strings with brackets": {`{"action":"a","post":"}{\"hookId\":\"fake\"","hookId":"real","created":"2025-01-01T00:00:00Z"}`, "real", "2025-01-01T00:00:00Z"},
		"literals":              {`{"action":"a","n":-1.5e3,"t":true,"z":null,"hookId":"h","created":"2025-01-01T00:00:00Z"}`, "h", "2025-01-01T00:00:00Z"},
		"escaped hookId value":  {`{"action":"a","hookId":"h\"1","created":"2025-01-01T00:00:00Z"}`, `h"1`, "2025-01-01T00:00:00Z"},
		"escaped key":           {`{"action":"a","hook\u0049d":"h","created":"2025-01-01T00:00:00Z"}`, "h", "2025-01-01T00:00:00Z"},
		"no created":            {`{"action":"a","hookId":"h"}`, "h", ""},
		// Without a non-empty string hookId the id is the derived one.
		"no hookId":          {`{"action":"a","created":"2025-01-01T00:00:00Z"}`, "", "2025-01-01T00:00:00Z"},
		"empty hookId":       {`{"action":"a","hookId":"","created":"2025-01-01T00:00:00Z"}`, "", "2025-01-01T00:00:00Z"},
		"number hookId":      {`{"action":"a","hookId":12,"created":"2025-01-01T00:00:00Z"}`, "", "2025-01-01T00:00:00Z"},
		"string then number": {`{"action":"a","hookId":"h","hookId":12,"created":"2025-01-01T00:00:00Z"}`, "", "2025-01-01T00:00:00Z"},
		"object hookId":      {`{"action":"a","hookId":{"id":"h"},"created":"2025-01-01T00:00:00Z"}`, "", "2025-01-01T00:00:00Z"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			id, created, err := Identify([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			ev, err := NewEvent([]byte(tc.body), Meta{})
			if err != nil {
				t.Fatal(err)
			}
			if id != ev.ID || created != ev.Env.Created {
				t.Fatalf("Identify gives id %q created %q; NewEvent gives %q %q", id, created, ev.ID, ev.Env.Created)
			}
			if tc.id != "" && id != tc.id {
				t.Fatalf("id %q, want the hookId %q", id, tc.id)
			}
			if tc.created != created {
				t.Fatalf("created %q, want %q", created, tc.created)
			}
		})
	}
}

func TestIdentifyChecksOnlyJSON(t *testing.T) {
	// The action is NewEvent's to check: the replay filters by window first.
	if id, created, err := Identify([]byte(`{"hookId":"h","created":"c"}`)); err != nil || id != "h" || created != "c" {
		t.Fatalf("no action: %q %q %v, want the hookId and created", id, created, err)
	}
	for body, want := range map[string]error{
		`{"action":"a","hookId":"h`: ErrMalformedJSON,
		`{"hookId":"h"} x`:          ErrMalformedJSON,
		`["hookId"]`:                ErrNotObject,
	} {
		if _, _, err := Identify([]byte(body)); !errors.Is(err, want) {
			t.Errorf("Identify(%s) = %v, want %v", body, err, want)
		}
	}
}
