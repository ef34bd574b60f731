// Command naive is the benchmark's baseline: the webhook receiver a user would write by hand.
// A plain net/http handler decodes the body into map[string]any and publishes it with the
// synchronous JetStream Publish and a Nats-Msg-Id, answering 200 after the ack.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	listen := getenv("NAIVE_LISTEN", ":8081")
	nc, err := nats.Connect(getenv("NATS_URL", nats.DefaultURL))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/webhook", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var payload map[string]any
		if err := json.Unmarshal(body, &payload); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		action, _ := payload["action"].(string)
		if action == "" {
			http.Error(w, "no action", http.StatusBadRequest)
			return
		}
		id, _ := payload["hookId"].(string)
		subject := "ayrshare." + action
		if sub, _ := payload["subAction"].(string); sub != "" {
			subject += "." + sub
		} else if typ, _ := payload["type"].(string); typ != "" {
			subject += "." + typ
		} else {
			subject += ".none"
		}
		ack, err := js.Publish(r.Context(), subject, body, jetstream.WithMsgID(id))
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"seq":%d,"duplicate":%t}`, ack.Sequence, ack.Duplicate)
	})
	log.Printf("naive webhook receiver on %s", listen)
	log.Fatal(http.ListenAndServe(listen, nil))
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
