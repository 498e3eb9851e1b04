#!/usr/bin/env bash
# Frames for training the Grace++ codec (training/train_grace.py), from every shared clip except the held-out
# evaluation clip (parking-person-bicycle-432p.mp4, used by bench:grace). Per clip, scaled to 480x272 RGB:
#   - the first 8 s at the native frame rate (consecutive frames: small motion), and
#   - up to 40 s at 10 fps (the product's segment rate: larger motion between frames).
# train_grace.py prep cuts each file into consecutive-frame triples.
#   training/grace_prep.sh ../shared/videos /tmp/grace-frames && \
#   /usr/bin/python3 training/train_grace.py prep --frames /tmp/grace-frames --out /tmp/grace-data.npy
set -euo pipefail
src=${1:?videos folder}
out=${2:?output folder}
mkdir -p "$out"
for v in "$src"/*; do
  name=$(basename "$v"); name=${name%.*}
  [ "$name" = parking-person-bicycle-432p ] && continue
  ffmpeg -v error -y -i "$v" -t 8 -vf scale=480:272,format=rgb24 -f rawvideo "$out/$name-native.rgb"
  ffmpeg -v error -y -i "$v" -t 40 -vf fps=10,scale=480:272,format=rgb24 -f rawvideo "$out/$name-10fps.rgb"
done
ls -la "$out"
