// Command health-anchor serves grpc.health.v1.Health/Check and nothing else: the bench's
// ceiling for one gRPC call on this machine (run it with GOMAXPROCS=1). With -cert, -key and
// -ca it serves mutual TLS, as the shop's services do with SHOP_TLS=1.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	address := flag.String("address", "127.0.0.1:0", "host:port to listen on")
	certFile := flag.String("cert", "", "serve mutual TLS with this certificate (PEM)")
	keyFile := flag.String("key", "", "the certificate's private key (PEM)")
	caFile := flag.String("ca", "", "the CA every client certificate must be signed by (PEM)")
	flag.Parse()
	var options []grpc.ServerOption
	if *certFile != "" {
		options = append(options, grpc.Creds(mutualTLS(*certFile, *keyFile, *caFile)))
	}
	listener, err := net.Listen("tcp", *address)
	if err != nil {
		log.Fatalf("listen %s: %v", *address, err)
	}
	server := grpc.NewServer(options...)
	healthpb.RegisterHealthServer(server, health.NewServer())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		server.Stop()
	}()
	if err := server.Serve(listener); err != nil {
		log.Fatalf("serve: %v", err)
	}
}

// mutualTLS: show the certificate, and require a client certificate signed by the CA.
func mutualTLS(certFile, keyFile, caFile string) credentials.TransportCredentials {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		log.Fatalf("load %s and %s: %v", certFile, keyFile, err)
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		log.Fatalf("read the CA: %v", err)
	}
	clients := x509.NewCertPool()
	if !clients.AppendCertsFromPEM(ca) {
		log.Fatalf("%s holds no PEM certificate", caFile)
	}
	return credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientCAs:    clients,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	})
}
