package logging

import (
	"bytes"
	"strings"
	"testing"
)

func TestConfig(t *testing.T) {
	tests := map[string]struct {
		cfg     Config
		valid   bool
		logsDbg bool
	}{
		"json info":     {Config{"json", "info"}, true, false},
		"console debug": {Config{"console", "debug"}, true, true},
		"bad format":    {Config{"xml", "info"}, false, false},
		"bad level":     {Config{"json", "loud"}, false, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.valid {
				t.Fatalf("Validate() = %v, want valid %v", err, tc.valid)
			}
			var b bytes.Buffer
			log := tc.cfg.New(&b, "test")
			log.Debug().Msg("dbg")
			log.Info().Msg("hello")
			if !strings.Contains(b.String(), "hello") || strings.Contains(b.String(), "dbg") != tc.logsDbg {
				t.Fatalf("output %q: want hello, debug shown %v", b.String(), tc.logsDbg)
			}
			if tc.cfg.Format == "json" && !strings.Contains(b.String(), `"svc":"test"`) {
				t.Fatalf("output %q lacks svc", b.String())
			}
		})
	}
}
