package main

// One trivial gRPC service, floor.Floor/Ping (google.protobuf.Empty in and out), written the way
// protoc-gen-go's output registers a service, without a .proto file to generate from. go-plugin
// already registers grpc.health.v1.Health itself, so the plugin's own service must be another.

import (
	"context"

	"github.com/golang/protobuf/ptypes/empty"
	"google.golang.org/grpc"
)

type floorService interface {
	Ping(context.Context, *empty.Empty) (*empty.Empty, error)
}

type floorServer struct{}

func (floorServer) Ping(context.Context, *empty.Empty) (*empty.Empty, error) {
	return &empty.Empty{}, nil
}

func pingHandler(srv interface{}, ctx context.Context, dec func(interface{}) error, interceptor grpc.UnaryServerInterceptor) (interface{}, error) {
	in := new(empty.Empty)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(floorService).Ping(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/floor.Floor/Ping"}
	return interceptor(ctx, in, info, func(ctx context.Context, req interface{}) (interface{}, error) {
		return srv.(floorService).Ping(ctx, req.(*empty.Empty))
	})
}

var floorServiceDesc = grpc.ServiceDesc{
	ServiceName: "floor.Floor",
	HandlerType: (*floorService)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Ping", Handler: pingHandler}},
	Streams:     []grpc.StreamDesc{},
}

func registerFloor(s *grpc.Server, srv floorService) {
	s.RegisterService(&floorServiceDesc, srv)
}
