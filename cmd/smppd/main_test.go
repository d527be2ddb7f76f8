package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCheckConfig(t *testing.T) {
	if code := run("../../configs/dev.yaml", true); code != 0 {
		t.Fatalf("-check-config on dev.yaml exited %d", code)
	}
	for _, f := range []string{"../../configs/cluster/n1.yaml", "../../configs/cluster/n2.yaml", "../../configs/cluster/n3.yaml"} {
		if code := run(f, true); code != 0 {
			t.Fatalf("-check-config on %s exited %d", f, code)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("server:\n  max_pdu_sise: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := run(bad, true); code != 2 {
		t.Fatalf("-check-config on a file with an unknown key exited %d, want 2", code)
	}
}
