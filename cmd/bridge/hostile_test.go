package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ayrbridge/ayrbridge/internal/proc"
)

// TestHostileClients attacks a bridge process with slowloris headers, trickled bodies,
// thousands of idle connections, oversized headers and a 100 MB body with a lying
// Content-Length, while an honest client keeps posting: every honest request is stored,
// the attackers are cut off by the configured limits, and memory stays bounded.
func TestHostileClients(t *testing.T) {
	bin := buildBridge(t)
	const readTimeout = 2 * time.Second
	p := startProc(t, bin, map[string]string{
		"NATS_EMBEDDED_DIR": t.TempDir(), "BRIDGE_READ_TIMEOUT": readTimeout.String(),
		"BRIDGE_MAX_HEADER_BYTES": "8192", "BRIDGE_MAX_BODY_BYTES": "65536",
	})
	addr := strings.TrimPrefix(p.URL, "http://")
	pid := p.Pid()
	rssBefore := rss(t, pid)

	var (
		wg       sync.WaitGroup
		cutOff   atomic.Int64 // attack connections the server closed or answered with an error
		attacked atomic.Int64
	)
	stop := make(chan struct{})
	attack := func(n int, f func(c net.Conn)) {
		for range n {
			wg.Go(func() {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					return
				}
				defer c.Close()
				attacked.Add(1)
				f(c)
			})
		}
	}
	// waitCut reads until the server answers or closes, which it must do within its limits.
	waitCut := func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(readTimeout + 10*time.Second))
		if _, err := bufio.NewReader(c).ReadByte(); err == nil || !isTimeout(err) {
			cutOff.Add(1)
		}
	}
	trickle := func(c net.Conn, data string, every time.Duration) {
		for i := range len(data) {
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
			if _, err := c.Write([]byte{data[i]}); err != nil {
				cutOff.Add(1)
				return
			}
		}
		waitCut(c)
	}
	attack(2000, func(c net.Conn) { waitCut(c) }) // idle: never send a byte
	attack(100, func(c net.Conn) {                // slowloris: headers that never end
		trickle(c, "POST /webhook HTTP/1.1\r\nHost: x\r\nX-A: "+strings.Repeat("a", 200), 50*time.Millisecond)
	})
	attack(50, func(c net.Conn) { // a body trickled byte by byte
		_, _ = c.Write([]byte("POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"))
		trickle(c, `{"action":"feed","pad":"`+strings.Repeat("x", 370)+`"}`, 50*time.Millisecond)
	})
	attack(50, func(c net.Conn) { // oversized headers
		_, _ = fmt.Fprintf(c, "POST /webhook HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", 16384))
		expectStatus(t, c, 431, &cutOff)
	})
	attack(20, func(c net.Conn) { // 100 MB announced, a little sent
		_, _ = c.Write([]byte("POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{\"action\":"))
		expectStatus(t, c, 413, &cutOff)
	})

	// The honest client posts throughout the attack.
	honest, stored := 0, 0
	deadline := time.Now().Add(readTimeout + 2*time.Second)
	var peakRSS int64
	for i := 0; time.Now().Before(deadline); i++ {
		a, err := tryPost(p.URL+"/webhook", fmt.Appendf(nil, `{"action":"feed","hookId":"honest-%d"}`, i), nil)
		honest++
		if err == nil && a.Status == http.StatusOK {
			stored++
		} else {
			t.Errorf("honest request %d: %+v %v", i, a, err)
		}
		peakRSS = max(peakRSS, rss(t, pid))
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	rssAfter := rss(t, pid)
	t.Logf("attack connections %d, cut off by the server %d; honest requests %d, stored %d; RSS before %.1f MB, peak %.1f MB, after %.1f MB",
		attacked.Load(), cutOff.Load(), honest, stored, mb(rssBefore), mb(peakRSS), mb(rssAfter))
	if honest == 0 || stored != honest {
		t.Fatalf("honest client: %d of %d stored", stored, honest)
	}
	if got := cutOff.Load(); got < attacked.Load()*9/10 {
		t.Fatalf("the server cut off only %d of %d attack connections", got, attacked.Load())
	}
	if grew := peakRSS - rssBefore; grew > 200<<20 {
		t.Fatalf("RSS grew by %.1f MB under attack", mb(grew))
	}
}

func expectStatus(t *testing.T, c net.Conn, want int, cutOff *atomic.Int64) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Errorf("no answer: %v", err)
		return
	}
	res.Body.Close()
	if res.StatusCode != want {
		t.Errorf("status %d, want %d", res.StatusCode, want)
		return
	}
	cutOff.Add(1)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// rss is a process's resident set size from /proc.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	n, err := proc.RSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mb(b int64) float64 { return float64(b) / 1e6 }
