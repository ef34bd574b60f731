// Package load is the benchmarks' HTTP load generator: keep-alive connections that each post
// Ayrshare-like webhooks with unique hookIds, one request at a time, over a lean HTTP/1.1
// client, so the generator costs the shared CPU as little as possible.
//
// Unlike wrk, a run ends by letting every connection finish the request it has in flight, so
// the count of 2xx answers is exact and can be compared with what the stream stored.
package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Config describes one load run.
type Config struct {
	Addr     string                     // host:port of the server
	Path     string                     // request path, /webhook by default
	Conns    int                        // concurrent keep-alive connections, each with one request in flight
	Duration time.Duration              // how long to send new requests
	Rate     float64                    // total requests per second across all connections; 0 is as fast as possible
	Prefix   string                     // makes hookIds unique across runs (up to 8 characters)
	Header   func(body []byte) []string // extra "Name: value" lines per request, e.g. a signature
}

// Result is what a run measured.
type Result struct {
	Sent      int
	OK        int // 2xx
	Non2xx    map[int]int
	Errors    int // connection errors (each ends that connection's request)
	Elapsed   time.Duration
	latencies []time.Duration // of 2xx answers
}

// RPS is 2xx answers per second.
func (r Result) RPS() float64 { return float64(r.OK) / r.Elapsed.Seconds() }

// Percentile returns the p-th percentile (0-100) latency of the 2xx answers.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.latencies)-1) * p / 100)
	return r.latencies[i]
}

// Run drives the server until cfg.Duration passes or ctx ends.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Conns <= 0 {
		return Result{}, errors.New("load: need at least one connection")
	}
	if cfg.Path == "" {
		cfg.Path = "/webhook"
	}
	if len(cfg.Prefix) > 8 {
		return Result{}, errors.New("load: prefix longer than 8 characters")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var tick <-chan time.Time
	var pace chan struct{}
	if cfg.Rate > 0 {
		// One pacer hands out send slots so the total rate holds whatever the latency.
		pace = make(chan struct{}, cfg.Conns)
		t := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate * 10))
		defer t.Stop()
		tick = t.C
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick:
					for range 10 {
						select {
						case pace <- struct{}{}:
						default:
						}
					}
				}
			}
		}()
	}
	results := make([]Result, cfg.Conns)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range cfg.Conns {
		wg.Go(func() { results[c] = worker(ctx, cfg, c, pace) })
	}
	wg.Wait()
	total := Result{Elapsed: time.Since(start), Non2xx: map[int]int{}}
	for _, r := range results {
		total.Sent += r.Sent
		total.OK += r.OK
		total.Errors += r.Errors
		for k, v := range r.Non2xx {
			total.Non2xx[k] += v
		}
		total.latencies = append(total.latencies, r.latencies...)
	}
	slices.Sort(total.latencies)
	return total, nil
}

func worker(ctx context.Context, cfg Config, id int, pace <-chan struct{}) Result {
	r := Result{Non2xx: map[int]int{}}
	body := Body(cfg.Prefix, id, 0)
	var req []byte
	var conn net.Conn
	var br *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for seq := 0; ctx.Err() == nil; seq++ {
		if pace != nil {
			select {
			case <-pace:
			case <-ctx.Done():
				return r
			}
		}
		SetHookID(body, cfg.Prefix, id, seq)
		req = appendRequest(req[:0], cfg, body)
		if conn == nil {
			c, err := net.DialTimeout("tcp", cfg.Addr, 5*time.Second)
			if err != nil {
				r.Errors++
				time.Sleep(10 * time.Millisecond)
				continue
			}
			conn, br = c, bufio.NewReaderSize(c, 4096)
		}
		t0 := time.Now()
		r.Sent++
		status, closeConn, err := roundTrip(conn, br, req)
		if err != nil {
			r.Errors++
			conn.Close()
			conn = nil
			continue
		}
		if status >= 200 && status < 300 {
			r.OK++
			r.latencies = append(r.latencies, time.Since(t0))
		} else {
			r.Non2xx[status]++
		}
		if closeConn {
			conn.Close()
			conn = nil
		}
	}
	return r
}

func appendRequest(b []byte, cfg Config, body []byte) []byte {
	b = append(b, "POST "...)
	b = append(b, cfg.Path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, cfg.Addr...)
	b = append(b, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n"...)
	if cfg.Header != nil {
		for _, h := range cfg.Header(body) {
			b = append(b, h...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "\r\n"...)
	return append(b, body...)
}

// roundTrip writes one request and reads its answer, discarding the body.
func roundTrip(conn net.Conn, br *bufio.Reader, req []byte) (status int, closeConn bool, err error) {
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(req); err != nil {
		return 0, false, err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, err
	}
	length := -1
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		if len(h) <= 2 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte{':'})
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			length, err = strconv.Atoi(string(v))
			if err != nil {
				return 0, false, err
			}
		case bytes.EqualFold(k, []byte("Connection")) && bytes.EqualFold(v, []byte("close")):
			closeConn = true
		}
	}
	if length < 0 {
		return 0, false, errors.New("answer without Content-Length")
	}
	if _, err := br.Discard(length); err != nil {
		return 0, false, err
	}
	return status, closeConn, nil
}
