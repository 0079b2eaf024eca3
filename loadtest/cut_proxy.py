#!/usr/bin/env python3
"""A TCP proxy whose connections can be cut: the worker<->broker fault of
loadtest/scenarios.sh. Usage: cut_proxy.py LISTEN_PORT TARGET_PORT; SIGUSR1
closes every open connection (new ones are accepted again at once)."""
import asyncio
import signal
import sys

open_writers = set()


async def pump(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def handle(client_reader, client_writer, target_port):
    try:
        broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.close()
        return
    open_writers.update({client_writer, broker_writer})
    await asyncio.gather(pump(client_reader, broker_writer), pump(broker_reader, client_writer))
    open_writers.difference_update({client_writer, broker_writer})


def cut():
    for writer in list(open_writers):
        writer.transport.abort()
    open_writers.clear()


async def main(listen_port, target_port):
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, target_port), "127.0.0.1", listen_port)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, cut)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
