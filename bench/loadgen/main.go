// Command loadgen drives a running bridge (or anything serving POST /webhook) with the
// benchmarks' load generator, for profiling by hand:
//
//	go run ./bench/loadgen -addr 127.0.0.1:8080 -conns 64 -duration 20s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/ayrbridge/ayrbridge/bench/load"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "host:port of the server")
	conns := flag.Int("conns", 64, "connections")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	rate := flag.Float64("rate", 0, "requests per second in all; 0 is as fast as possible")
	prefix := flag.String("prefix", fmt.Sprintf("g%x", time.Now().Unix()%0xfffff), "hookId prefix (up to 8 characters), unique per run")
	flag.Parse()
	r, err := load.Run(context.Background(), load.Config{Addr: *addr, Conns: *conns, Duration: *duration, Rate: *rate, Prefix: *prefix})
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	fmt.Printf("%.0f req/s, 2xx %d of %d sent, other %v, connection errors %d, p50 %s, p99 %s\n",
		r.RPS(), r.OK, r.Sent, r.Non2xx, r.Errors, r.Percentile(50), r.Percentile(99))
}
