package broker

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// healthServer serves nats-server's /healthz alone on the monitoring port
// (MonitorHealth): what a supervisor or load balancer needs, without the
// connection, subscription and stream lists of the full monitoring port.
type healthServer struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

func startHealth(ns *server.Server, host string, port int) (*healthServer, error) {
	if port < 0 {
		port = 0
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", ns.HandleHealthz)
	h := &healthServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second},
		addr: l.Addr().String(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(h.done)
		if err := h.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return
		}
	}()
	return h, nil
}

// close stops serving and waits; safe on a nil server.
func (h *healthServer) close() {
	if h == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = h.srv.Shutdown(ctx)
	<-h.done
}
