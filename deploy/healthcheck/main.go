// accord-health: the standard grpc.health.v1 Check against an Accord coordinator over
// mTLS with a startup kit's certificate, as Go tooling (grpc_health_probe, Kubernetes
// gRPC probes, Envoy) does it. It proves that Go's crypto/x509 parses the kit's
// certificates and that the coordinator's health service answers SERVING.
//
// Usage: accord-health -addr HOST:PORT (-kit KIT_DIR | -cert PEM -key PEM -ca PEM)
//
//	[-service NAME] [-server-name NAME] [-timeout 10s]
//
// Exit status: 0 SERVING, 1 not serving or the call failed, 2 bad usage or kit files.
// Built from Debian's packaged Go libraries (golang-google-grpc-dev), without modules:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o accord-health .
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	addr := flag.String("addr", "", "the coordinator, HOST:PORT")
	kit := flag.String("kit", "", "a startup kit folder: tls.pem, tls.key, ca.pem")
	certFile := flag.String("cert", "", "client certificate (instead of KIT/tls.pem)")
	keyFile := flag.String("key", "", "client key (instead of KIT/tls.key)")
	caFile := flag.String("ca", "", "the federation's CA certificate (instead of KIT/ca.pem)")
	service := flag.String("service", "", "the service to check (empty: the server as a whole)")
	serverName := flag.String("server-name", "", "the name to verify in the coordinator's certificate (default: HOST)")
	timeout := flag.Duration("timeout", 10*time.Second, "how long to wait for the answer")
	flag.Parse()
	pick := func(explicit *string, name string) string {
		if *explicit != "" || *kit == "" {
			return *explicit
		}
		return filepath.Join(*kit, name)
	}
	cert, key, ca := pick(certFile, "tls.pem"), pick(keyFile, "tls.key"), pick(caFile, "ca.pem")
	if *addr == "" || cert == "" || key == "" || ca == "" {
		fmt.Fprintln(os.Stderr, "usage: accord-health -addr HOST:PORT (-kit KIT_DIR | -cert PEM -key PEM -ca PEM) [-service NAME]")
		os.Exit(2)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: the client certificate or key does not load: %v\n", cert, err)
		os.Exit(2)
	}
	// Parse the leaf the way every Go TLS stack will: this is where a 128-bit OID arc fails.
	if _, err := x509.ParseCertificate(pair.Certificate[0]); err != nil {
		fmt.Fprintf(os.Stderr, "%s: Go cannot parse the certificate: %v\n", cert, err)
		os.Exit(2)
	}
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", ca, err)
		os.Exit(2)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		fmt.Fprintf(os.Stderr, "%s: no certificate Go can parse\n", ca)
		os.Exit(2)
	}
	config := &tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      roots,
		ServerName:   *serverName,
		MinVersion:   tls.VersionTLS12,
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	conn, err := grpc.DialContext(ctx, *addr, grpc.WithTransportCredentials(credentials.NewTLS(config)), grpc.WithBlock())
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: no mTLS connection: %v\n", *addr, err)
		os.Exit(1)
	}
	defer conn.Close()
	reply, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: *service})
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: health check failed: %v\n", *addr, err)
		os.Exit(1)
	}
	fmt.Println(reply.GetStatus().String())
	if reply.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		os.Exit(1)
	}
}
