"""A third-party trainer from a drop-in file: full-batch logistic/linear regression on the platform's encoder."""

from appliance import hookimpl

APPLIANCE_CONTRACT = "1.0"


def fit(ctx):
    import torch

    net = torch.nn.Sequential(ctx.encoder, torch.nn.Linear(ctx.encoder.out_features, ctx.n_outputs))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.seq = net

        def forward(self, numeric, codes):
            return self.seq[1](self.seq[0](numeric, codes))

    model = Net().to(ctx.device)
    opt = torch.optim.SGD(model.parameters(), lr=ctx.hp["lr"])
    xn, xc, y = ctx.tensors("train")
    loss_fn = torch.nn.BCEWithLogitsLoss() if ctx.task == "binary" else torch.nn.MSELoss()
    for epoch in range(1, ctx.hp["epochs"] + 1):
        loss = loss_fn(model(xn, xc).reshape(-1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ctx.log_metrics(epoch, {"train_loss": loss.item()})
        ctx.end_epoch(epoch, epoch, ctx.validate(model), {"model": model.state_dict()})
    return model


class Trainer:
    name = "linear"
    fit = staticmethod(fit)
    tasks = ("binary", "regression")
    hyperparameters = {"epochs": 3, "lr": 0.1}
    description = "full-batch linear model (test fixture)"


@hookimpl
def register_trainers(register):
    register(Trainer())
