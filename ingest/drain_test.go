package ingest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
)

// oversized is three times defaultLimits.MaxBodyBytes: large enough that most of it is still on
// the way when the server has answered from the headers.
const oversized = 3 << 20

// post413 sends one POST of body on a connection of its own (trusting roots over HTTPS) and
// reports why the answer is not a JSON 413 that closes the connection, or nil.
func post413(url string, body io.Reader, roots *x509.CertPool) error {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: roots},
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("read answer %d: %w", res.StatusCode, err)
	}
	var answer struct {
		Error string `json:"error"`
	}
	switch {
	case res.StatusCode != http.StatusRequestEntityTooLarge:
		return fmt.Errorf("status %d, want 413 (%q)", res.StatusCode, b)
	case json.Unmarshal(b, &answer) != nil || answer.Error == "":
		return fmt.Errorf("413 without a JSON error: %q", b)
	case !res.Close:
		return errors.New("413 without Connection: close")
	}
	return nil
}

// tally counts failed tries by message, so a report shows every kind of failure seen.
type tally struct {
	failed int
	first  error
	kinds  map[string]int
}

func (t *tally) add(err error) {
	if err == nil {
		return
	}
	if t.failed == 0 {
		t.first, t.kinds = err, map[string]int{}
	}
	t.failed++
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "Post ") {
		msg = msg[i+2:] // drop the per-try address, keep the cause
	}
	t.kinds[msg]++
}

func TestOversizedBodyGets413(t *testing.T) {
	srv := startServer(t, &fakePublisher{}, defaultLimits, nil)
	body := bytes.Repeat([]byte("a"), oversized)
	const tries = 100
	var got tally
	for range tries {
		got.add(post413(srv.URL+"/webhook", bytes.NewReader(body), nil))
	}
	if got.failed > 0 {
		t.Errorf("%d of %d tries failed; first: %v; by cause: %v", got.failed, tries, got.first, got.kinds)
	}
}

// TestOversizedBodyGets413OverTLS is the same through HTTPS: the TLS connection's close must
// reach the half-close too, after its close_notify.
func TestOversizedBodyGets413OverTLS(t *testing.T) {
	pair := newTLSPair(t)
	r, _ := newReloader(t, pair)
	addr, pub := startTLSServer(t, r, defaultLimits)
	body := bytes.Repeat([]byte("a"), oversized)
	const tries = 100
	var got tally
	for range tries {
		got.add(post413("https://"+addr+"/webhook", bytes.NewReader(body), pair.ca.Pool()))
	}
	if got.failed > 0 {
		t.Errorf("%d of %d tries failed; first: %v; by cause: %v", got.failed, tries, got.first, got.kinds)
	}
	if n := len(pub.published()); n != 0 {
		t.Fatalf("%d oversized webhooks stored", n)
	}
}

func TestOversizedChunkedBodyGets413(t *testing.T) {
	srv := startServer(t, &fakePublisher{}, defaultLimits, nil)
	const tries = 10
	var got tally
	for range tries {
		// A reader of unknown length: net/http sends it chunked, with no Content-Length, so the
		// server learns it is too large only after reading MaxBodyBytes of it.
		body := io.MultiReader(bytes.NewReader(bytes.Repeat([]byte("a"), oversized)))
		got.add(post413(srv.URL+"/webhook", body, nil))
	}
	if got.failed > 0 {
		t.Errorf("%d of %d tries failed; first: %v; by cause: %v", got.failed, tries, got.first, got.kinds)
	}
}

// TestDrainIsBounded checks that a client that never stops sending after its 413 cannot keep the
// connection, nor its slot under the connection limit: with room for one connection, the next
// request is served once the drain gives up.
func TestDrainIsBounded(t *testing.T) {
	limits := defaultLimits
	limits.MaxConns = 1
	for name, tt := range map[string]struct {
		chunk []byte
		pause time.Duration
	}{
		"flood":   {chunk: make([]byte, 32<<10)},                      // stopped by the byte bound
		"trickle": {chunk: []byte("a"), pause: 50 * time.Millisecond}, // stopped by the time bound
	} {
		t.Run(name, func(t *testing.T) {
			// A server of its own: a slot is given back a moment after the client has gone.
			srv := startServer(t, &fakePublisher{}, limits, nil)
			c, err := net.DialTimeout("tcp", srv.Addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			head := "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
			if _, err := c.Write([]byte(head)); err != nil {
				t.Fatal(err)
			}
			wrote := make(chan error, 1)
			go func() {
				for {
					if _, err := c.Write(tt.chunk); err != nil {
						wrote <- err
						return
					}
					time.Sleep(tt.pause)
				}
			}()
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			switch {
			case err == nil:
				res.Body.Close()
				if res.StatusCode != http.StatusRequestEntityTooLarge {
					t.Fatalf("status %d, want 413", res.StatusCode)
				}
			case errors.Is(err, os.ErrDeadlineExceeded) || name == "trickle":
				t.Fatalf("read answer: %v", err)
			default:
				// A flood can outrun its own reader: past the drain's bound the server resets the
				// connection, and the reset may discard the 413 before it is read.
			}
			if name == "trickle" {
				// Still draining: the connection keeps its slot, so the limit still holds.
				if status, err := refusedAtOnce(srv.Addr); err != nil || status != http.StatusServiceUnavailable {
					t.Errorf("while draining: status %d (%v), want an immediate 503", status, err)
				}
			}
			if err := <-wrote; errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the server never closed a connection that kept sending")
			}
			natstest.Eventually(t, 10*time.Second, func() error {
				if status, err := healthz(srv.Addr); err != nil || status != http.StatusOK {
					return fmt.Errorf("after the drain: status %d (%v), want 200", status, err)
				}
				return nil
			})
		})
	}
}

// healthz asks for /healthz on a connection of its own.
func healthz(addr string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")); err != nil {
		return 0, err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

// refusedAtOnce connects without sending anything and returns the status the listener answers
// with unasked, as it does to a connection over the limit.
func refusedAtOnce(addr string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}
