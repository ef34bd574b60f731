package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ayrbridge/ayrbridge/internal/metricstest"
	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/internal/tlstest"
	"github.com/ayrbridge/ayrbridge/internal/volumetest"
)

// Profiles and secrets of the reload tests: distinctive, so that finding one in the log means
// a secret leaked.
const (
	profileA, profileB = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0", "9abf1426d6ce9432"
	primarySecret      = "whsec-PRIMARY-5e1f0c"
	secretA1, secretA2 = "whsec-A1-9d2b7a", "whsec-A2-41c8e0"
	secretA3, secretB1 = "whsec-A3-c07f13", "whsec-B1-2a6d94"
)

// signedPoster posts webhooks of a profile signed with a secret, each with a new hookId, and
// counts the ones the bridge stored.
type signedPoster struct {
	t      *testing.T
	url    string
	n      int
	stored atomic.Int64
}

// status posts one webhook of refID signed with secret and returns the answer's status.
func (p *signedPoster) status(refID, secret string) int {
	p.t.Helper()
	p.n++
	body := fmt.Appendf(nil, `{"action":"feed","hookId":"reload-%d","refId":%q}`, p.n, refID)
	a := post(p.t, p.url+"/webhook", body, map[string]string{"X-Authorization-Content-SHA256": sign(secret, body)})
	if a.Status == 200 {
		p.stored.Add(1)
	}
	return a.Status
}

// expect checks each case now: refID signed with secret gets want.
func (p *signedPoster) expect(step string, cases ...any) {
	p.t.Helper()
	for i := 0; i < len(cases); i += 3 {
		if got := p.status(cases[i].(string), cases[i+1].(string)); got != cases[i+2].(int) {
			p.t.Errorf("%s: refId %.8s signed with %s: status %d, want %d", step, cases[i], cases[i+1], got, cases[i+2])
		}
	}
}

// await polls until refID signed with secret gets want: the bridge has reloaded.
func (p *signedPoster) await(step, refID, secret string, want int) {
	p.t.Helper()
	natstest.Eventually(p.t, 10*time.Second, func() error {
		if got := p.status(refID, secret); got != want {
			return fmt.Errorf("%s: refId %.8s signed with %s: status %d, want %d", step, refID, secret, got, want)
		}
		return nil
	})
}

// TestProfileSecretsReloadedByRunningBridge adds, rotates and removes profiles' secrets in a
// mounted-Secret directory while the bridge runs, breaks a file and repairs it.
func TestProfileSecretsReloadedByRunningBridge(t *testing.T) {
	vol := volumetest.New(t)
	vol.Update(t, map[string]string{profileA: secretA1})
	b := startProc(t, buildBridge(t), map[string]string{
		"AYRSHARE_WEBHOOK_SECRETS": primarySecret, "AYRSHARE_PROFILE_SECRETS_DIR": vol.Dir,
		"BRIDGE_RELOAD_INTERVAL": "200ms", "NATS_EMBEDDED_DIR": t.TempDir(),
	})
	p := &signedPoster{t: t, url: b.URL}
	p.expect("start", profileA, secretA1, 200, profileA, primarySecret, 401, profileB, secretB1, 401, profileB, primarySecret, 200)

	vol.Update(t, map[string]string{profileA: secretA1, profileB: secretB1})
	p.await("add B", profileB, secretB1, 200)
	p.expect("add B", profileB, primarySecret, 401, profileA, secretB1, 401)

	vol.Update(t, map[string]string{profileA: secretA1 + "\n" + secretA2 + "\n", profileB: secretB1})
	p.await("rotate A, both", profileA, secretA2, 200)
	p.expect("rotate A, both", profileA, secretA1, 200)
	vol.Update(t, map[string]string{profileA: secretA2, profileB: secretB1})
	p.await("rotate A, new only", profileA, secretA1, 401)
	p.expect("rotate A, new only", profileA, secretA2, 200)

	vol.Update(t, map[string]string{profileA: secretA2})
	p.await("remove B", profileB, primarySecret, 200)
	p.expect("remove B", profileB, secretB1, 401)

	vol.Update(t, map[string]string{profileA: "\n"})
	natstest.Eventually(t, 10*time.Second, func() error {
		if v, err := scrapeMetric(b.URL, `ayrbridge_secrets_last_reload_successful`); err != nil || v != 0 {
			return fmt.Errorf("last reload successful = %v (%v), want 0 after an empty file", v, err)
		}
		return nil
	})
	p.expect("broken A", profileA, secretA2, 200, profileA, primarySecret, 401)

	vol.Update(t, map[string]string{profileA: secretA3})
	p.await("repair A", profileA, secretA3, 200)
	p.expect("repair A", profileA, secretA2, 401)

	for metric, want := range map[string]float64{
		`ayrbridge_secrets_profiles`:                           1,
		`ayrbridge_secrets_last_reload_successful`:             1,
		`ayrbridge_secrets_reloads_total{result="error"}`:      1,
		`ayrbridge_signature_failures_total{reason="missing"}`: 0,
	} {
		if v, err := scrapeMetric(b.URL, metric); err != nil || v != want {
			t.Errorf("%s = %v (%v), want %v", metric, v, err, want)
		}
	}
	if v, _ := scrapeMetric(b.URL, `ayrbridge_signature_failures_total{reason="mismatch"}`); v < 8 {
		t.Errorf("signature failures{reason=mismatch} = %v, want at least the 8 expected refusals", v)
	}
	if n := len(natstest.Messages(t, streamJS(t, b.NATS), "AYRSHARE")); n != int(p.stored.Load()) {
		t.Errorf("stream holds %d messages, the bridge answered 200 to %d", n, p.stored.Load())
	}
	out := b.Output()
	if !strings.Contains(out, `"message":"profile secrets file refused"`) || !strings.Contains(out, profileA) {
		t.Errorf("the empty file was not logged with its name:\n%s", out)
	}
	for _, s := range []string{primarySecret, secretA1, secretA2, secretA3, secretB1} {
		if strings.Contains(out, s) {
			t.Errorf("the log shows secret %s", s)
		}
	}
}

// TestSIGHUPReloadsProfileSecrets checks that SIGHUP rereads the directory at once, long before
// the next check, and does not stop the bridge.
func TestSIGHUPReloadsProfileSecrets(t *testing.T) {
	dir := t.TempDir()
	write := func(content string) {
		if err := os.WriteFile(filepath.Join(dir, profileA), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(secretA1)
	b := startProc(t, buildBridge(t), map[string]string{
		"AYRSHARE_PROFILE_SECRETS_DIR": dir, "BRIDGE_RELOAD_INTERVAL": "1h", "NATS_EMBEDDED_DIR": t.TempDir(),
	})
	p := &signedPoster{t: t, url: b.URL}
	// No AYRSHARE_WEBHOOK_SECRETS: a webhook of no profile cannot be verified and is refused.
	p.expect("start", profileA, secretA1, 200, profileB, secretA1, 401, "", secretA1, 401)
	write(secretA2)
	p.expect("changed, not reloaded", profileA, secretA2, 401)
	if err := b.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.await("SIGHUP", profileA, secretA2, 200)
	p.expect("SIGHUP", profileA, secretA1, 401)
	select {
	case <-b.Done():
		t.Fatalf("SIGHUP stopped the bridge: %v", b.Err())
	default:
	}
}

// TestHTTPSWithRenewedCertificate serves HTTPS to a client that trusts only the test CA, then
// renews the certificate: new connections get the new one while an open one keeps working.
func TestHTTPSWithRenewedCertificate(t *testing.T) {
	ca := tlstest.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := ca.Issue(t, certFile, keyFile)
	b := startProc(t, buildBridge(t), map[string]string{
		"BRIDGE_TLS_CERT_FILE": certFile, "BRIDGE_TLS_KEY_FILE": keyFile,
		"BRIDGE_RELOAD_INTERVAL": "200ms", "NATS_EMBEDDED_DIR": t.TempDir(),
	})
	if !strings.HasPrefix(b.URL, "https://") {
		t.Fatalf("bridge serves %s, want https", b.URL)
	}
	newClient := func(keepAlive bool) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, DisableKeepAlives: !keepAlive,
		}}
	}
	// serial posts one webhook and returns the served certificate's serial and whether the
	// connection was reused.
	serial := func(c *http.Client, id string) (*big.Int, bool, error) {
		var reused bool
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, _ := http.NewRequest(http.MethodPost, b.URL+"/webhook", strings.NewReader(`{"action":"feed","hookId":"`+id+`"}`))
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		req.Header.Set("Content-Type", "application/json")
		res, err := c.Do(req)
		if err != nil {
			return nil, false, err
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			return nil, reused, fmt.Errorf("status %d: %s", res.StatusCode, body)
		}
		return res.TLS.PeerCertificates[0].SerialNumber, reused, nil
	}
	kept := newClient(true)
	natstest.Eventually(t, 15*time.Second, func() error {
		s, _, err := serial(kept, "tls-first")
		if err == nil && s.Cmp(first.SerialNumber) != 0 {
			err = fmt.Errorf("served serial %x, want %x", s, first.SerialNumber)
		}
		return err
	})
	if _, err := (&http.Client{Timeout: 5 * time.Second}).Get(b.URL + "/healthz"); err == nil {
		t.Error("a client without the test CA accepted the certificate")
	}
	plain := strings.Replace(b.URL, "https://", "http://", 1)
	if res, err := (&http.Client{Timeout: 5 * time.Second}).Get(plain + "/healthz"); err == nil && res.StatusCode == 200 {
		t.Error("plain HTTP served on the HTTPS listener")
	}

	second := ca.Issue(t, certFile, keyFile)
	natstest.Eventually(t, 10*time.Second, func() error {
		s, _, err := serial(newClient(false), fmt.Sprintf("tls-renewed-%d", time.Now().UnixNano()))
		if err == nil && s.Cmp(second.SerialNumber) != 0 {
			err = fmt.Errorf("new connections get serial %x, want the renewed %x", s, second.SerialNumber)
		}
		return err
	})
	s, reused, err := serial(kept, "tls-kept")
	if err != nil || !reused || s.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("the connection opened before the renewal: serial %x reused %v err %v, want the first serial on the same connection", s, reused, err)
	}
	samples, err := metricstest.ScrapeWith(t.Context(), kept, b.URL+"/metrics")
	if v := samples["ayrbridge_tls_certificate_expiry_timestamp_seconds"]; err != nil || v != float64(second.NotAfter.Unix()) {
		t.Errorf("certificate expiry metric %v (%v), want %d", v, err, second.NotAfter.Unix())
	}
}
