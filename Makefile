# smppd — see README.md. `make run` starts a dev node behind the built-in SMSC simulator;
# `make test` is what CI runs.
GO       ?= go
BIN      := bin
DATA     := data
FUZZTIME ?= 10s

.PHONY: all build run cluster test fuzz bench lint clean

all: build

build:
	$(GO) build -o $(BIN)/smppd ./cmd/smppd
	$(GO) build -o $(BIN)/smppctl ./cmd/smppctl
	$(GO) build -o $(BIN)/smscsim ./cmd/smscsim

# Starts the SMSC simulator on 127.0.0.1:2776 and one smppd node with configs/dev.yaml.
# Ctrl-C (or SIGTERM to the process group) reaches smppd, which drains and exits; then the
# simulator is stopped. The shell does not forward the signal: a second one would make smppd
# stop at once instead of draining.
run: build
	@mkdir -p $(DATA)
	@echo "smscsim: upstream SMSC simulator on 127.0.0.1:2776"
	@echo "smppd:   bind SMPP 3.4 to 127.0.0.1:2775 as system_id=demo password=demo"
	@echo "         admin http://127.0.0.1:8775/metrics /healthz /readyz /api/v1/status"
	@echo "         try: $(BIN)/smppctl send --to 4915112345678 --text hello"
	@$(BIN)/smscsim -addr 127.0.0.1:2776 -receipt-delay 1s & sim=$$!; \
	  trap 'kill $$sim 2>/dev/null; wait $$sim 2>/dev/null' EXIT; \
	  trap ':' INT TERM; \
	  $(BIN)/smppd -config configs/dev.yaml & smppd=$$!; \
	  wait $$smppd; wait $$smppd

# Starts the simulator and a 3-node cluster on loopback (configs/cluster/n1..n3.yaml): SMPP on
# 127.0.0.1:2775/2785/2795, admin on 8775/8785/8795 (smppctl's default is node 1; --addr picks
# another), Raft on 8300-8302, data in ./data/n1..n3. Ctrl-C stops all of them (each drains).
cluster: build
	@mkdir -p $(DATA)
	@echo "smscsim: 127.0.0.1:2776; smppd n1/n2/n3: SMPP 127.0.0.1:2775/2785/2795, admin :8775/:8785/:8795"
	@echo "try: $(BIN)/smppctl cluster status; $(BIN)/smppctl blocklist add +4915112345678 --addr 127.0.0.1:8785"
	@$(BIN)/smscsim -addr 127.0.0.1:2776 -receipt-delay 1s & sim=$$!; \
	  trap 'kill $$sim 2>/dev/null; wait $$sim 2>/dev/null' EXIT; \
	  trap ':' INT TERM; \
	  $(BIN)/smppd -config configs/cluster/n1.yaml & n1=$$!; \
	  $(BIN)/smppd -config configs/cluster/n2.yaml & n2=$$!; \
	  $(BIN)/smppd -config configs/cluster/n3.yaml & n3=$$!; \
	  wait $$n1 $$n2 $$n3; wait $$n1 $$n2 $$n3

# CI runs exactly this (via .ci/run).
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(GO) test -run='^$$' -fuzz=FuzzFraming -fuzztime=$(FUZZTIME) ./smpp/
	$(GO) test -run='^$$' -fuzz=FuzzParseSubmit -fuzztime=$(FUZZTIME) ./smpp/
	$(GO) test -run='^$$' -fuzz=FuzzParseReceipt -fuzztime=$(FUZZTIME) ./smpp/

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzFraming -fuzztime=5m ./smpp/
	$(GO) test -run='^$$' -fuzz=FuzzParseReceipt -fuzztime=5m ./smpp/

bench:
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=3s ./bench/

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

clean:
	rm -rf $(BIN) $(DATA)
