// Command apiclient calls the Kubernetes API the way a pod does, with its service-account token,
// and records every failed request: a test runs it while the cluster's CA is rotated.
//
// Every APICLIENT_INTERVAL_MS milliseconds (default 250) it GETs
// https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api on a new TLS connection, with the
// token and the CA bundle (every certificate in ca.crt) read again for that request, verifying the
// server as kubernetes.default.svc, with a 5 s timeout. Each request prints one line on stdout:
// "ok <unix-ms> 200" or "fail <unix-ms> <status or error>" (the time is the request's start).
// :8080 serves GET /counts ("ok=N fail=M") and GET /failures (the last 50 fail lines).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	saDir       = "/var/run/secrets/kubernetes.io/serviceaccount"
	serverName  = "kubernetes.default.svc"
	keepFailure = 50
)

type stats struct {
	mu       sync.Mutex
	ok, fail int
	failures []string // the last keepFailure fail lines
}

func (s *stats) record(line string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		s.ok++
		return
	}
	s.fail++
	s.failures = append(s.failures, line)
	if len(s.failures) > keepFailure {
		s.failures = s.failures[len(s.failures)-keepFailure:]
	}
}

func (s *stats) counts() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("ok=%d fail=%d", s.ok, s.fail)
}

func (s *stats) lastFailures() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, l := range s.failures {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// call does one request: the status, and an error when there was no complete answer.
func call(ctx context.Context, url string) (int, error) {
	token, err := os.ReadFile(saDir + "/token")
	if err != nil {
		return 0, err
	}
	ca, err := os.ReadFile(saDir + "/ca.crt")
	if err != nil {
		return 0, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return 0, errors.New("ca.crt holds no certificate")
	}
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: serverName},
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return resp.StatusCode, err
	}
	return resp.StatusCode, nil
}

func main() {
	interval := 250 * time.Millisecond
	if v := os.Getenv("APICLIENT_INTERVAL_MS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			log.Fatalf("APICLIENT_INTERVAL_MS=%q is not a positive number", v)
		}
		interval = time.Duration(n) * time.Millisecond
	}
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		log.Fatal("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set (run in a pod)")
	}
	url := "https://" + net.JoinHostPort(host, port) + "/api"

	var s stats
	mux := http.NewServeMux()
	mux.HandleFunc("GET /counts", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, s.counts())
	})
	mux.HandleFunc("GET /failures", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, s.lastFailures())
	})
	go func() { log.Fatal(http.ListenAndServe(":8080", mux)) }()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for ctx.Err() == nil {
		start := time.Now().UnixMilli()
		status, err := call(ctx, url)
		if ctx.Err() != nil {
			break // stopping: the request was cut short, not failed
		}
		var line string
		switch {
		case err != nil:
			line = fmt.Sprintf("fail %d %s", start, strings.Join(strings.Fields(err.Error()), " "))
		case status != http.StatusOK:
			line = fmt.Sprintf("fail %d %d", start, status)
		default:
			line = fmt.Sprintf("ok %d %d", start, status)
		}
		fmt.Println(line)
		s.record(line, err == nil && status == http.StatusOK)
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	log.Printf("stopping: %s", s.counts())
}
