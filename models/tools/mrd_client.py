"""An MRD streaming client, as Gadgetron users run one: the ISMRMRD Python package's
ProtocolSerializer sends a file's header and acquisitions over TCP, its ProtocolDeserializer
reads the images the server sends back (crates/edge/tests/mrd.rs runs it against
`sparsemap serve --mrd`).

    models/.venv/bin/python models/tools/mrd_client.py HOST:PORT FILE.h5 OUT_DIR

Sends a config-file message, the XML header and every acquisition of FILE.h5 in file order,
then close; meanwhile a reader thread collects the answer. Each returned image is written as
OUT_DIR/image_rep{repetition}_slice{slice:03}.npy (complex64 [n_y, n_x]) with one JSON line
on stdout (its header fields and meta attributes); text messages go to stderr. Exits 1 if the
server sent a text message starting with "sparsemap: error" or no close.
"""

import json
import socket
import sys
import threading
from pathlib import Path

import ismrmrd
import numpy as np
from ismrmrd.serialization import ConfigFile, ProtocolDeserializer, ProtocolSerializer


def main() -> int:
    address, path, out_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    host, port = address.rsplit(":", 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    header = ismrmrd.xsd.CreateFromDocument(dataset.read_xml_header())
    count = dataset.number_of_acquisitions()

    sock = socket.create_connection((host, int(port)), timeout=600)
    received: list = []
    errors: list = []
    closed = threading.Event()

    def read_answers() -> None:
        try:
            for obj in ProtocolDeserializer(sock.makefile("rb")).deserialize():
                if isinstance(obj, ismrmrd.Image):
                    received.append(obj)
                elif isinstance(obj, str):
                    print(f"server: {obj}", file=sys.stderr)
                    if obj.startswith("sparsemap: error"):
                        errors.append(obj)
            closed.set()
        except Exception as e:  # the server dropped the connection
            errors.append(f"reading the answer: {e!r}")

    reader = threading.Thread(target=read_answers)
    reader.start()
    writer = sock.makefile("wb")
    serializer = ProtocolSerializer(writer)
    serializer.serialize(ConfigFile("default.xml"))
    serializer.serialize(header)
    for i in range(count):
        serializer.serialize(dataset.read_acquisition(i))
    serializer.close()
    writer.flush()
    reader.join()
    sock.close()

    for image in received:
        data = np.asarray(image.data)
        plane = data.reshape(data.shape[-2], data.shape[-1]).astype(np.complex64)
        name = f"image_rep{image.repetition}_slice{image.slice:03}.npy"
        np.save(out_dir / name, plane)
        print(json.dumps({
            "file": name,
            "slice": int(image.slice),
            "repetition": int(image.repetition),
            "image_index": int(image.image_index),
            "image_type": int(image.image_type),
            "data_type": int(image.data_type),
            "matrix_size": [int(v) for v in image.matrix_size],
            "field_of_view": [float(v) for v in image.field_of_view],
            "position": [float(v) for v in image.position],
            "read_dir": [float(v) for v in image.read_dir],
            "attributes": image.attribute_string,
        }))
    print(f"sent {count} acquisitions, received {len(received)} images", file=sys.stderr)
    if errors or not closed.is_set():
        print("; ".join(errors) or "no close message", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
