package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/ayrbridge/ayrbridge/bench/load"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "")
	conns := flag.Int("conns", 64, "")
	d := flag.Duration("d", 10*time.Second, "")
	prefix := flag.String("p", "x", "")
	flag.Parse()
	r, err := load.Run(context.Background(), load.Config{Addr: *addr, Conns: *conns, Duration: *d, Prefix: *prefix})
	fmt.Println(err, r.RPS(), r.OK, r.Errors, r.Non2xx, r.Percentile(50), r.Percentile(99))
}
