cd /work/main
. ./scripts/env.sh
for seed in 0 1; do
for strategy in regularized learned random; do
python search_supernet.py --supernet logs/recipes/fpnas/supernet.params --digits-view few-shot --max-macs 0.3M \
  --strategy $strategy --population 16 --generations 6 --seed $seed --save-dir logs/searchcmp/$strategy-$seed \
  --models-dir logs/searchcmp/models-$strategy-$seed --overwrite --no-progress > logs/searchcmp-$strategy-$seed.log 2>&1 || echo fail $strategy $seed
done; done
echo done
