// The Go plugin floor: the smallest realistic go-plugin gRPC plugin, to compare the Rust
// plugin's binary size, idle memory and handshake time against (tests/bench/floor.rs,
// BENCHMARKS.md "Against the Go plugin floor").
//
// It does what every Nomad plugin built on go-plugin does at start: check the magic cookie,
// negotiate protocol version 2, listen on a unix socket, serve go-plugin's own gRPC services
// (health, broker, controller) and one plugin's service, and print the handshake line. It has
// no Nomad or AWS code, so whatever a real Go driver plugin adds comes on top of these figures.
//
// Built by build.sh from Debian's packages in GOPATH mode (no modules, no network).
package main

import (
	"context"
	"errors"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// The same handshake as the Rust plugin's (src/plugin/handshake.rs, tests/support/host.rs).
var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  2,
	MagicCookieKey:   "NOMAD_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255",
}

// floorPlugin is served over gRPC only.
type floorPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (floorPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	registerFloor(s, floorServer{})
	return nil
}

func (floorPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (interface{}, error) {
	return nil, errors.New("go-floor: server side only")
}

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: handshake,
		Plugins:         plugin.PluginSet{"driver": floorPlugin{}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
