package ingest

import (
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/ayrbridge/ayrbridge/internal/logtest"
	"github.com/ayrbridge/ayrbridge/internal/volumetest"
)

const (
	refA, refB             = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0", "9abf1426d6ce9432"
	secA, secAOld, secB    = "whsec-profile-a", "whsec-profile-a-old", "whsec-profile-b"
	secDefault, secUnknown = "whsec-primary", "whsec-nobody"
)

// writeFile writes content to dir/name, replacing it.
func writeFile(t testing.TB, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// profileDir is a directory with one file per profile.
func profileDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		writeFile(t, dir, name, content)
	}
	return dir
}

func newProfileSecrets(t testing.TB, dir string, log zerolog.Logger) (*ProfileSecrets, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	p, err := NewProfileSecrets(dir, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	return p, reg
}

// serveOnce runs one POST /webhook through h without a network, as the server would.
func serveOnce(h *Handler, header map[string]string, body []byte) *fasthttp.Response {
	rc := newRequestCtx(body)
	for k, v := range header {
		rc.Request.Header.Set(k, v)
	}
	h.ServeFastHTTP(rc)
	var res fasthttp.Response
	rc.Response.CopyTo(&res)
	return &res
}

// newRequestCtx is a webhook POST of body, served without a connection.
func newRequestCtx(body []byte) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(http.MethodPost)
	req.SetRequestURI("/webhook")
	req.Header.SetContentType("application/json")
	req.SetBody(body)
	var rc fasthttp.RequestCtx
	rc.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	return &rc
}

// TestProfileBinding checks that a profile with its own secrets is verified against those
// alone, and every other webhook against the Primary Profile's, with either header.
func TestProfileBinding(t *testing.T) {
	dir := profileDir(t, map[string]string{refA: secA + "\n" + secAOld + "\n", refB: secB})
	ps, _ := newProfileSecrets(t, dir, zerolog.Nop())
	bodyOf := func(refID string) []byte {
		if refID == "" {
			return []byte(`{"action":"social","type":"link","hookId":"bind-none"}`)
		}
		return []byte(`{"action":"social","type":"link","hookId":"bind-` + refID + `","refId":"` + refID + `"}`)
	}
	tests := []struct {
		name, refID, secret string
		want                int
	}{
		{"mapped profile, its secret", refA, secA, 200},
		{"mapped profile, its previous secret (rotation)", refA, secAOld, 200},
		{"mapped profile, another profile's secret", refA, secB, 401},
		{"mapped profile, the default secret", refA, secDefault, 401},
		{"other mapped profile, its secret", refB, secB, 200},
		{"other mapped profile, the first one's secret", refB, secA, 401},
		{"unmapped profile, the default secret", "ffff0000ffff0000", secDefault, 200},
		{"unmapped profile, a profile's secret", "ffff0000ffff0000", secA, 401},
		{"no refId, the default secret", "", secDefault, 200},
		{"no refId, a profile's secret", "", secB, 401},
		{"mapped profile, unknown secret", refA, secUnknown, 401},
	}
	headers := map[string]func(sig string) map[string]string{
		"v1": func(sig string) map[string]string { return map[string]string{HeaderSignature: sig} },
		"v2": func(sig string) map[string]string {
			return map[string]string{HeaderSignatureV2: "v1=" + sign(secUnknown, []byte("x")) + ",v1=" + sig}
		},
	}
	for hname, header := range headers {
		for _, tt := range tests {
			t.Run(hname+"/"+tt.name, func(t *testing.T) {
				pub := &fakePublisher{}
				reg := prometheus.NewRegistry()
				m, err := NewMetrics(reg)
				if err != nil {
					t.Fatal(err)
				}
				h := newSignedHandler(t, pub, WithSecrets(secDefault), WithProfileSecrets(ps), WithMetrics(m))
				body := bodyOf(tt.refID)
				res := serveOnce(h, header(sign(tt.secret, body)), body)
				if res.StatusCode() != tt.want {
					t.Fatalf("status %d, want %d: %s", res.StatusCode(), tt.want, res.Body())
				}
				stored := pub.published()
				if tt.want != 200 {
					if len(stored) != 0 {
						t.Fatalf("refused webhook stored %d events", len(stored))
					}
					if got := testutil.ToFloat64(m.sigFailures.WithLabelValues("mismatch")); got != 1 {
						t.Fatalf("signature failures{reason=mismatch} = %v, want 1", got)
					}
					return
				}
				if len(stored) != 1 || stored[0].Env.RefID != tt.refID {
					t.Fatalf("stored %d events (%+v), want the one of %q", len(stored), stored, tt.refID)
				}
			})
		}
	}
}

// TestProfileSecretsWithoutDefault checks that with a directory but no default secrets every
// webhook must be signed, and one no profile claims is refused.
func TestProfileSecretsWithoutDefault(t *testing.T) {
	ps, _ := newProfileSecrets(t, profileDir(t, map[string]string{refA: secA}), zerolog.Nop())
	pub := &fakePublisher{}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h := newSignedHandler(t, pub, WithProfileSecrets(ps), WithMetrics(m))
	unmapped := []byte(`{"action":"feed","hookId":"u1","refId":"0000aaaa"}`)
	mapped := []byte(`{"action":"feed","hookId":"m1","refId":"` + refA + `"}`)
	for _, c := range []struct {
		name   string
		header map[string]string
		body   []byte
		want   int
	}{
		{"unmapped, signed", map[string]string{HeaderSignature: sign(secA, unmapped)}, unmapped, 401},
		{"unmapped, unsigned", nil, unmapped, 401},
		{"mapped, unsigned", nil, mapped, 401},
		{"unparsable body, bad signature", map[string]string{HeaderSignature: sign(secUnknown, []byte("{"))}, []byte(`{"refId":`), 400},
		{"mapped, signed", map[string]string{HeaderSignature: sign(secA, mapped)}, mapped, 200},
	} {
		if res := serveOnce(h, c.header, c.body); res.StatusCode() != c.want {
			t.Errorf("%s: status %d, want %d: %s", c.name, res.StatusCode(), c.want, res.Body())
		}
	}
	if n := len(pub.published()); n != 1 {
		t.Fatalf("%d events stored, want only the signed mapped one", n)
	}
	for reason, want := range map[string]float64{"missing": 2, "mismatch": 1, "stale": 0} {
		if got := testutil.ToFloat64(m.sigFailures.WithLabelValues(reason)); got != want {
			t.Errorf("signature failures{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

// verifies reports whether a webhook of refID signed with secret passes ps alone.
func verifies(t testing.TB, ps *ProfileSecrets, refID, secret string) bool {
	t.Helper()
	body := []byte(`{"action":"feed","refId":"` + refID + `"}`)
	v := verifier{profiles: ps, defaults: newKeyset([][]byte{[]byte(secDefault)})}
	err := v.verify(requestHeader(t, map[string]string{HeaderSignature: sign(secret, body)}), body, refID)
	if err != nil && !errors.Is(err, errBadSignature) {
		t.Fatalf("verify: %v", err)
	}
	return err == nil
}

// TestProfileSecretsReload adds, rotates and removes a profile's secrets, refuses broken files
// while keeping what the profile had, and counts each reload.
func TestProfileSecretsReload(t *testing.T) {
	var logs logtest.Buffer
	dir := profileDir(t, map[string]string{refA: secA})
	ps, reg := newProfileSecrets(t, dir, zerolog.New(&logs))
	gauge := func(name string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name && len(mf.GetMetric()) == 1 {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s", name)
		return 0
	}
	reloads := func(result string) float64 {
		t.Helper()
		if result == "ok" {
			return testutil.ToFloat64(ps.reloadOK)
		}
		return testutil.ToFloat64(ps.reloadKO)
	}
	check := func(step string, profiles int, ok bool, want map[[2]string]bool) {
		t.Helper()
		for k, accepted := range want {
			if got := verifies(t, ps, k[0], k[1]); got != accepted {
				t.Errorf("%s: refId %s with %s accepted=%v, want %v", step, k[0], k[1], got, accepted)
			}
		}
		if got := gauge("ayrbridge_secrets_profiles"); got != float64(profiles) {
			t.Errorf("%s: ayrbridge_secrets_profiles = %v, want %d", step, got, profiles)
		}
		if got := gauge("ayrbridge_secrets_last_reload_successful"); got != b2f(ok) {
			t.Errorf("%s: last reload successful = %v, want %v", step, got, ok)
		}
	}
	check("start", 1, true, map[[2]string]bool{{refA, secA}: true, {refA, secDefault}: false, {refB, secDefault}: true})

	writeFile(t, dir, refB, secB+"\n")
	mustReload(t, ps, false)
	check("add", 2, true, map[[2]string]bool{{refB, secB}: true, {refB, secDefault}: false, {refB, secA}: false})

	writeFile(t, dir, refA, secA+"\n"+secAOld+"\n") // rotation: both for a while
	mustReload(t, ps, false)
	check("rotate, both", 2, true, map[[2]string]bool{{refA, secA}: true, {refA, secAOld}: true})
	writeFile(t, dir, refA, secAOld+"\r\n")
	mustReload(t, ps, false)
	check("rotate, new only", 2, true, map[[2]string]bool{{refA, secA}: false, {refA, secAOld}: true})

	if err := os.Remove(filepath.Join(dir, refB)); err != nil {
		t.Fatal(err)
	}
	mustReload(t, ps, false)
	check("remove", 1, true, map[[2]string]bool{{refB, secB}: false, {refB, secDefault}: true})
	if ok := reloads("ok"); ok != 5 {
		t.Errorf("reloads{result=ok} = %v, want 5 (start, add, two rotations, remove)", ok)
	}

	// Broken updates: the profile keeps what it had, the error is counted and logged once.
	for _, broken := range []struct {
		name  string
		write func()
	}{
		{"empty", func() { writeFile(t, dir, refA, "\n  \n") }},
		{"too many secrets", func() { writeFile(t, dir, refA, strings.Repeat("s\n", maxProfileSecrets+1)) }},
		{"unreadable (dangling link)", func() {
			os.Remove(filepath.Join(dir, refA))
			if err := os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, refA)); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		before := reloads("error")
		broken.write()
		mustReload(t, ps, true)
		check(broken.name, 1, false, map[[2]string]bool{{refA, secAOld}: true, {refA, secDefault}: false})
		mustReload(t, ps, true) // unchanged: neither counted nor logged again
		if got := reloads("error") - before; got != 1 {
			t.Errorf("%s: reloads{result=error} grew by %v, want 1", broken.name, got)
		}
		os.Remove(filepath.Join(dir, refA))
		writeFile(t, dir, refA, secAOld)
		mustReload(t, ps, false)
		check(broken.name+", repaired", 1, true, map[[2]string]bool{{refA, secAOld}: true})
	}
	writeFile(t, dir, "secret.txt", secB)
	mustReload(t, ps, true)
	check("implausible name", 1, false, map[[2]string]bool{{"secret.txt", secB}: false})
	os.Remove(filepath.Join(dir, "secret.txt"))
	writeFile(t, dir, ".hidden", secB)
	mustReload(t, ps, false)
	check("hidden file ignored", 1, true, nil)

	out := logs.String()
	if n := strings.Count(out, "profile secrets file refused"); n != 4 {
		t.Errorf("%d refusals logged, want 4 (each broken update once):\n%s", n, out)
	}
	for _, s := range []string{secA, secAOld, secB} {
		if strings.Contains(out, s) {
			t.Errorf("log contains secret %q:\n%s", s, out)
		}
	}
}

// TestProfileSecretsBrokenAtStart checks that a profile whose file cannot be used from the
// start refuses its webhooks instead of letting the Primary Profile's secret sign them.
func TestProfileSecretsBrokenAtStart(t *testing.T) {
	ps, _ := newProfileSecrets(t, profileDir(t, map[string]string{refA: "", refB: secB}), zerolog.Nop())
	if verifies(t, ps, refA, secDefault) {
		t.Fatal("a profile with an empty file verified against the default secret")
	}
	if !verifies(t, ps, refB, secB) || ps.Len() != 1 {
		t.Fatalf("the good profile did not load (%d profiles)", ps.Len())
	}
	if _, err := NewProfileSecrets(filepath.Join(t.TempDir(), "missing"), prometheus.NewRegistry(), zerolog.Nop()); err == nil {
		t.Fatal("a missing directory was accepted")
	}
}

// TestProfileSecretsKubernetesSwap follows the layout kubelet gives a mounted Secret: each key
// a link through ..data to a timestamped directory, updated by swapping ..data atomically.
func TestProfileSecretsKubernetesSwap(t *testing.T) {
	vol := volumetest.New(t)
	vol.Update(t, map[string]string{refA: secA, refB: secB})
	ps, _ := newProfileSecrets(t, vol.Dir, zerolog.Nop())
	if !verifies(t, ps, refA, secA) || ps.Len() != 2 {
		t.Fatalf("first generation not loaded (%d profiles)", ps.Len())
	}
	// Same size, possibly the same mtime: only the link target tells the files apart.
	same := strings.Repeat("x", len(secA))
	vol.Update(t, map[string]string{refA: same})
	mustReload(t, ps, false)
	if verifies(t, ps, refA, secA) || !verifies(t, ps, refA, same) {
		t.Fatal("the swapped generation is not the one verified against")
	}
	if verifies(t, ps, refB, secB) || !verifies(t, ps, refB, secDefault) {
		t.Fatal("a key removed from the Secret still has its own secrets")
	}
	if ps.Len() != 1 {
		t.Fatalf("%d profiles: ..data or a timestamped directory was taken for one", ps.Len())
	}
}

// mustReload runs one watch pass and checks whether it reported an error.
func mustReload(t testing.TB, ps *ProfileSecrets, wantErr bool) {
	t.Helper()
	if err := ps.reload(false, false); (err != nil) != wantErr {
		t.Fatalf("reload error %v, want error %v", err, wantErr)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
