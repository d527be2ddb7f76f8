package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

// writeKeyPair writes a self-signed certificate for 127.0.0.1 and returns the paths and a pool
// trusting it.
func writeKeyPair(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600) != nil ||
		os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600) != nil {
		t.Fatal("cannot write key pair")
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLSListener: SMPP over TLS next to the plain listener; TLS below the configured minimum is
// refused.
func TestTLSListener(t *testing.T) {
	certFile, keyFile, pool := writeKeyPair(t)
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, func(c *config.Config) {
		c.Listen.TLS = config.ListenTLS{Addr: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, MinVersion: "1.3"}
	})
	if n.TLSAddr() == "" || n.SMPPAddr() == "" {
		t.Fatalf("listeners: tls %q plain %q, want both", n.TLSAddr(), n.SMPPAddr())
	}
	cc := smpp.DefaultClientConfig()
	cc.Name, cc.Addr, cc.SystemID, cc.Password = "tls-esme", n.TLSAddr(), "demo", "demo"
	cc.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	cc.Logger = testLogger()
	up := make(chan struct{}, 1)
	cc.OnFree = func() {
		select {
		case up <- struct{}{}:
		default:
		}
	}
	c := smpp.NewClient(cc)
	c.Start()
	defer c.Close(t.Context())
	select {
	case <-up:
	case <-time.After(5 * time.Second):
		t.Fatal("TLS client did not bind")
	}
	w := make(resultCh, 1)
	if err := c.Submit(gsm("4915112345678", "over tls"), w); err != nil {
		t.Fatal(err)
	}
	if r := w.Next(t, 15*time.Second); r.Status != smpp.StatusOK || !ourID.MatchString(r.ID) {
		t.Fatalf("over TLS: %v %q %v", r.Status, r.ID, r.Err)
	}

	conn, err := tls.Dial("tcp", n.TLSAddr(), &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12})
	if err == nil {
		conn.Close()
		t.Fatal("a TLS 1.2 handshake succeeded against min_version 1.3")
	}
}
